"""Judging a trained model on a split: intervals, operating points, calibration, subgroups, radiologists' reads.

`score` turns a split's logits into the metrics.json content; `write_outputs` puts it in a folder with
per_class.csv, the per-image predictions and report.html. The training run's test step and `cxr14 evaluate`
both call these two, so a run folder and an evaluation folder read the same way.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from cxr14 import __version__
from cxr14.config import CompareConfig, EvaluateConfig, FitGateConfig, TrainConfig
from cxr14.config.options import check_writable
from cxr14.data.datasets.nih import find_in
from cxr14.data.pipeline.loaders import build_datasets
from cxr14.data.splits import Split, describe_lists
from cxr14.errors import UserError
from cxr14.files import write_text
from cxr14.judging.adjudicated import GOOGLE_FILE, read_google_labels, score_adjudicated
from cxr14.judging.bootstrap import format_intervals, patient_bootstrap
from cxr14.judging.calibration import expected_calibration_error, reliability_bins
from cxr14.judging.mapping import align
from cxr14.judging.metrics import auroc_columns, mean_defined, merge_json, optional
from cxr14.judging.report import write_report
from cxr14.judging.report.published import OFFICIAL_TEST_IMAGES, images_fingerprint
from cxr14.judging.subgroups import demographic_groups, subgroup_aurocs
from cxr14.judging.thresholds import choose_on_validation, operating_point
from cxr14.model.decision import ValidationChoice, apply_temperature
from cxr14.model.ensemble import write_manifest
from cxr14.model.inference import Predictions, predict
from cxr14.model.loading import LoadedModel, load_model

log = logging.getLogger(__name__)
#: The dataset options a scoring command takes from the model's run unless given (`data_config_for`).
DATA_OPTIONS = ("labels", "uncertain", "views", "readers", "labeler", "negative", "patient_pattern", "patient_scope",
                "mix")
PER_CLASS_FIELDS = ("auroc", "ci_low", "ci_high", "auprc", "prevalence", "n_pos", "n_unknown", "threshold",
                    "sensitivity", "specificity", "ppv", "npv", "f1", "tp", "fp", "tn", "fn", "ece")  # fmt: skip


@dataclass(frozen=True)
class Scoring:
    """How a split is scored: bootstrap size and seed, calibration bins."""

    n_resamples: int = 2000
    seed: int = 0
    level: float = 0.95
    n_bins: int = 10


def sample_note(split: Split) -> dict[str, Any] | None:
    """Say plainly when a split was scored on a random subset (training's --max_test_samples)."""
    if split.capped_from is None:
        return None
    return {
        "scored": len(split),
        "of": split.capped_from,
        "note": (
            f"Scored on a seeded random subset of {len(split):,} of the {split.capped_from:,} {split.name} images "
            f"(--max_test_samples). Published ChestX-ray14 results use the full official test list "
            f"({OFFICIAL_TEST_IMAGES:,} images); run `cxr14 evaluate` for the whole split."
        ),
    }


def by_source(split: Split, probs: np.ndarray, scoring: Scoring) -> dict[str, Any] | None:
    """Mixed datasets: each source's AUROCs with their own patient-bootstrap intervals (a finding a source does not
    have is unknown there, so its AUROC there is undefined); None for one dataset."""
    if split.origin is None or len(split.origins) < 2:
        return None
    out = {}
    for k, origin in enumerate(split.origins):
        rows = np.flatnonzero(split.origin == k)
        if not len(rows):
            continue
        boot = patient_bootstrap(split.labels[rows], probs[rows], split.patients[rows], scoring.n_resamples,
                                 scoring.seed, scoring.level, split.label_names)  # fmt: skip
        out[origin.name] = {"dataset": origin.dataset, "data_dir": str(origin.data_dir),
                            "batch_weight": origin.weight, **boot.to_json()}  # fmt: skip
        print(format_intervals(boot, f"{split.name} split, {origin.name} ({origin.dataset}) alone"))
    return out


def data_record(cfg: TrainConfig) -> dict[str, Any]:
    """Where the scored images came from, for metrics.json and the report's model card."""
    if cfg.dataset == "nih":
        lists = describe_lists(cfg.data_dir, cfg.seed)
    else:
        lists = f"{cfg.dataset}'s own split where it has one, else a seeded patient-wise split (seed {cfg.seed})"
    where = cfg.csv if cfg.dataset == "csv" else cfg.data_dir
    return {"dataset": cfg.dataset, "data_dir": str(where), "lists": lists}


def score(
    split: Split,
    logits: np.ndarray,
    calibration: ValidationChoice | None,
    scoring: Scoring,
    data: dict[str, Any],
    google: Any = None,
    ood: np.ndarray | None = None,
) -> dict[str, Any]:
    """metrics.json for `split` (rows aligned with `logits`): the training schema plus intervals and the rest.

    `ood`: the gate's ood_score per image, when the model has a gate (metrics["ood"]: the share flagged and the
    AUROCs without the flagged films)."""
    targets, names = split.labels, split.label_names
    temperature = calibration.temperature if calibration is not None else None
    probs = apply_temperature(logits, temperature)
    boot = patient_bootstrap(targets, probs, split.patients, scoring.n_resamples, scoring.seed, scoring.level, names)
    thresholds = calibration.thresholds if calibration is not None else np.full(len(names), np.nan)
    points = operating_point(targets, probs, thresholds, names)
    reliability = reliability_bins(targets, probs, names, scoring.n_bins)
    d = split.demographics
    groups = demographic_groups(d.sex, d.age, d.view)
    subgroups = subgroup_aurocs(targets, probs, split.patients, groups, scoring.n_resamples, scoring.seed,
                                names=names)  # fmt: skip
    adjudicated = score_adjudicated(split.names, probs, targets, names, google, scoring.n_resamples, scoring.seed) \
        if google is not None else None  # fmt: skip
    metrics = merge_json(boot.to_json(), points.to_json(), reliability.to_json(), {"split": split.name})
    metrics["labels"] = list(names)
    metrics["calibration"] = {
        "temperature": None if temperature is None else [float(t) for t in temperature],
        "ece_before_temperature": None if temperature is None
        else [float(e) for e in expected_calibration_error(targets, apply_temperature(logits), scoring.n_bins)],
        "reliability": reliability.bins_json(),
    }  # fmt: skip
    metrics["thresholds"] = {**(calibration.to_json() if calibration else {}), "chosen_on": "validation"} \
        if calibration else None  # fmt: skip
    metrics["subgroups"] = subgroups.to_json()
    metrics["adjudicated"] = adjudicated.to_json() if adjudicated is not None else None
    metrics["ood"] = ood_record(targets, probs, ood, names)
    metrics["sample"] = sample_note(split)
    metrics["sources"] = by_source(split, probs, scoring)
    metrics["data"] = {**data, "images_sha256": images_fingerprint(split.names),
                       "patients": "none named: every image is its own patient, so the split and the intervals are "
                       "by image" if split.by_image else "as the data names them"}  # fmt: skip
    metrics["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    metrics["cxr14_version"] = __version__
    print(format_intervals(boot, f"{split.name} split: AUROC with {scoring.level:.0%} patient-bootstrap intervals"))
    if metrics["sample"]:
        log.warning("%s", metrics["sample"]["note"])
    return metrics


def ood_record(
    targets: np.ndarray, probs: np.ndarray, ood: np.ndarray | None, names: tuple[str, ...]
) -> dict[str, Any] | None:
    """How much of the split the gate flags as unlike the training films, and the AUROCs without those films."""
    if ood is None:
        return None
    flagged = np.asarray(ood) > 1.0
    kept = ~flagged
    per_class = auroc_columns(targets[kept], probs[kept]) if kept.any() else np.full(targets.shape[1], np.nan)
    record = {
        "n_flagged": int(flagged.sum()),
        "share_flagged": float(flagged.mean()),
        "threshold": "ood_score > 1 (the gate's threshold: about the 99th percentile of films like the training ones)",
        "mean_auroc_all": mean_defined(auroc_columns(targets, probs)),
        "mean_auroc_unflagged": mean_defined(per_class),
        "per_class_unflagged": {name: optional(v) for name, v in zip(names, per_class, strict=True)},
        "ood_score_quantiles": {f"q{q}": float(np.quantile(ood, q / 100)) for q in (50, 90, 99)},
    }
    if flagged.any():
        log.warning(
            "%d of %d films (%.1f%%) look unlike the training films (ood_score > 1); mean AUROC without them %s",
            flagged.sum(), len(flagged), 100 * flagged.mean(),
            "undefined" if record["mean_auroc_unflagged"] is None else f"{record['mean_auroc_unflagged']:.4f}",
        )  # fmt: skip
    return record


def find_google_labels(data_dir: Path) -> Any:
    """Google's adjudicated labels when they sit in the data folder (plain or gzipped), else None."""
    found = find_in(data_dir, GOOGLE_FILE)
    if found is None:
        return None
    log.info("scoring against radiologists' reads in %s", found)
    return read_google_labels(found)


def write_outputs(out: Path, metrics: dict[str, Any], split: Split, probs: np.ndarray, card: dict[str, Any]) -> None:
    """metrics.json, per_class.csv, SPLIT_predictions.csv and report.html into `out`, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps({**metrics, "model": card}, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["finding", *PER_CLASS_FIELDS])
    for name in split.label_names:
        row = metrics["per_class"][name]
        writer.writerow([name, *(_cell(row.get(k)) for k in PER_CLASS_FIELDS)])
    write_text(out / "per_class.csv", buf.getvalue())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    labels = split.label_names
    writer.writerow(["image", "patient", *labels, *(f"true_{name}" for name in labels)])
    for name, patient, p, t in zip(split.names, split.patients, probs, split.labels, strict=True):
        writer.writerow([name, int(patient), *(repr(float(v)) for v in p), *(int(v) for v in t)])
    write_text(out / f"{split.name}_predictions.csv", buf.getvalue())
    write_report(out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def data_config_for(cfg: EvaluateConfig | CompareConfig | FitGateConfig, state_config: dict[str, Any]) -> TrainConfig:
    """The training run's data settings (dataset, split fraction, seed, size) with this command's folder and
    options; a --dataset other than the run's reads that dataset whole (its own labels, unless --labels)."""
    own = state_config.get("dataset", "nih")
    dataset = getattr(cfg, "dataset", None) or own
    keep = {k: state_config.get(k) for k in DATA_OPTIONS if k in state_config}
    if dataset != own:
        for k in ("labels", "negative", "patient_pattern", "mix"):  # they name the model's own data's classes and files
            keep.pop(k, None)
    given = {k: getattr(cfg, k, None) for k in DATA_OPTIONS}
    csv = cfg.csv or (Path(state_config["csv"]) if dataset == own and state_config.get("csv") else None)
    return TrainConfig.from_json(
        state_config,
        dataset=dataset,
        data_dir=cfg.data_dir,
        csv=csv,
        cache_dir=cfg.cache_dir,
        max_test_samples=getattr(cfg, "max_samples", 0) if getattr(cfg, "split", "test") == "test" else 0,
        on_bad_image=cfg.on_bad_image,
        batch_size=max(1, cfg.batch_size // 2),  # the loader doubles it for evaluation
        num_workers=cfg.num_workers,
        progress=cfg.progress,
        init=None,
        **{**keep, **{k: v for k, v in given.items() if v is not None}},
    )


def default_out(cfg: EvaluateConfig) -> Path:
    """eval-SPLIT-TIMESTAMP beside the checkpoint (an ensemble's: beside its first member, or its manifest) or the
    predictions file."""
    first = Path(str(cfg.checkpoint or cfg.predictions).split(",")[0])
    return first.parent / f"eval-{cfg.split}-{time.strftime('%Y%m%d-%H%M%S')}"


def file_data_config(cfg: EvaluateConfig | CompareConfig) -> TrainConfig:
    """The data settings for scoring a predictions file: no run to take them from, so this command's dataset
    options over training's defaults (a seeded split, where the data has none of its own, is training's)."""
    given = {k: getattr(cfg, k) for k in DATA_OPTIONS if getattr(cfg, k, None) is not None}
    return TrainConfig(dataset=cfg.dataset or "nih", data_dir=cfg.data_dir, csv=cfg.csv, cache_dir=cfg.cache_dir,
                       max_train_samples=0, max_test_samples=cfg.max_samples if cfg.split == "test" else 0,
                       on_bad_image=cfg.on_bad_image, progress=cfg.progress, **given)  # fmt: skip


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """`cxr14 evaluate`: score a checkpoint (or a file of predictions) on a split of a data folder; write the
    outputs."""
    out = cfg.out or default_out(cfg)
    if cfg.out is None:
        check_writable(f"--out (by default beside the {'checkpoint' if cfg.checkpoint else 'predictions'})", out,
                       folder=True)  # fmt: skip
    if (out / "metrics.json").exists():
        raise UserError(f"{out} already holds an evaluation (metrics.json); pass another --out.")
    if cfg.predictions is not None:
        return evaluate_file(cfg, out)
    model = load_model(cfg.checkpoint, cfg.device)
    train_cfg = data_config_for(cfg, model.card["config"])
    if cfg.bbox:
        from cxr14.judging.evaluate_boxes import find_boxes

        find_boxes(cfg.data_dir, train_cfg.dataset)  # before minutes of scoring, not after
    if model.members and model.calibration is None:
        model = ensemble_thresholds(model, train_cfg)
    if cfg.split == "val" and cfg.max_samples:
        log.warning("--max_samples applies to the test split only; scoring the whole validation split")
    data = build_datasets(train_cfg, (cfg.split,))[cfg.split]
    split, pred = predict_split(model, data.dataset, data.split, train_cfg)
    split, logits, calibration, alignment = align(model.labels, split, pred.logits, model.calibration,
                                                  cfg.approximate)  # fmt: skip
    if not alignment.identity:
        log.info("scoring %d of the data's labels with the model's findings: %s%s", len(alignment.pairs),
                 "; ".join(f"{d} <- {'/'.join(m)}{' (approximate)' * (k == 'approximate')}" for d, m, k in
                           alignment.pairs), f"; left out: {', '.join(alignment.left_out)}" if alignment.left_out
                 else "")  # fmt: skip
    google = find_google_labels(cfg.data_dir) if cfg.split == "test" and train_cfg.dataset == "nih" else None
    scoring = Scoring(cfg.n_resamples, cfg.seed)
    metrics = score(split, logits, calibration, scoring, data_record(train_cfg), google, pred.ood)
    metrics["label_map"] = alignment.to_json()
    if cfg.bbox:
        from cxr14.judging.evaluate_boxes import localise

        metrics["localisation"] = localise(model, data, split.names, cfg.data_dir, out, train_cfg.dataset)
    probs = apply_temperature(logits, calibration.temperature if calibration is not None else None)
    write_outputs(out, metrics, split, probs, model.card)
    if model.members and model.calibration is not None:
        members = [Path(m.card["checkpoint"]) for m in model.members]
        manifest = write_manifest(out, members, model.calibration, model.card["thresholds_chosen_on"])
        log.info("ensemble manifest with its validation thresholds: %s (cxr14 predict/serve --checkpoint it)", manifest)
    log.info("evaluation written to %s (metrics.json, per_class.csv, %s_predictions.csv, report.html)", out, split.name)
    return metrics


def evaluate_file(cfg: EvaluateConfig, out: Path) -> dict[str, Any]:
    """`cxr14 evaluate --predictions FILE`: another tool's probabilities judged as a model's are, on the same split.

    Only the split's labels and patients are read (no image is opened); the file's rows are matched to the
    split's films and its columns to the split's labels through the label map."""
    from cxr14.data.pipeline.loaders import load_splits
    from cxr14.judging.external import on_split, read_file

    file = read_file(cfg.predictions)
    train_cfg = file_data_config(cfg)
    split, logits, record = on_split(file, load_splits(train_cfg)[cfg.split], cfg.intersect)
    split, logits, _, alignment = align(file.labels, split, logits, None, cfg.approximate)
    log.info("%s: %d films of the %s split, findings %s", file.path, len(split), split.name,
             "; ".join(f"{d} <- {'/'.join(m)}" for d, m, _ in alignment.pairs))  # fmt: skip
    metrics = score(split, logits, None, Scoring(cfg.n_resamples, cfg.seed), data_record(train_cfg))
    metrics["label_map"] = alignment.to_json()
    metrics["predictions_file"] = record
    write_outputs(out, metrics, split, apply_temperature(logits), file.card())
    log.info("evaluation written to %s (metrics.json, per_class.csv, %s_predictions.csv, report.html)", out, split.name)
    return metrics


def ensemble_thresholds(model: LoadedModel, cfg: TrainConfig) -> LoadedModel:
    """An ensemble given without a manifest, with thresholds chosen on its validation split (Youden's J on the
    averaged probabilities; no temperature of its own: the members' are applied before averaging)."""
    val = build_datasets(cfg, ("val",))["val"]
    split, pred = predict_split(model, val.dataset, val.split, cfg)
    choice = choose_on_validation(split.labels, pred.logits, calibrate=False)
    where = f"validation split of {cfg.data_dir} ({len(split)} images), by cxr14 evaluate"
    log.info("ensemble: thresholds chosen on the %s", where)
    return replace(model, calibration=choice, card={**model.card, "thresholds_chosen_on": where})


def predict_split(model: LoadedModel, dataset: Any, split: Split, cfg: TrainConfig) -> tuple[Split, Predictions]:
    """The predictions for every readable image of a split, and the split reduced to those images (same order)."""
    from cxr14.data.pipeline.loaders import make_loader

    loader: DataLoader = make_loader(dataset, cfg, train=False, device=model.classifier.device)
    pred = predict(model.classifier, loader, desc=split.name, progress=cfg.progress)
    if pred.n_bad:
        log.warning("%s: %d unreadable image(s) skipped", split.name, pred.n_bad)
    if len(pred.index) == 0:
        raise UserError(f"No readable image in the {split.name} split; see the skipped-image count above.")
    return split.take(pred.index), pred
