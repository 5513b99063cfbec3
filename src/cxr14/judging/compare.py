"""`cxr14 compare`: is model B better than model A on the same patients? Paired differences, not two intervals.

Every model is scored on the same images - through the one inference pass (`evaluate.predict_split`), or by
reusing the predictions an evaluation or training run already wrote, when they are of exactly those images, or
from another tool's predictions file (`judging.external`), matched to the same films and findings - and compared
with the first (the baseline), finding by finding and for the mean AUROC:

- each model's AUROC (scikit-learn's) and the difference B - A;
- a 95% interval of the difference from ONE paired patient bootstrap: every resample draws patients once and
  scores both models on them (`bootstrap.paired_resamples`), so the interval reflects how the difference
  varies, not how each AUROC does;
- DeLong's test of the difference (the fast midrank algorithm of Sun & Xu 2014, `delong`), and Holm's
  adjustment over the findings of each comparison. The mean AUROC's p-value comes from the paired bootstrap
  (DeLong's covariance is per finding).

Outputs: comparison.json, comparison.csv and report.html (a forest plot of the differences) in --out; the
terminal gets the table.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from cxr14 import __version__
from cxr14.config import CompareConfig
from cxr14.config.options import check_writable
from cxr14.data.datasets.base import Demographics
from cxr14.data.pipeline.loaders import build_datasets
from cxr14.data.splits import Split
from cxr14.errors import UserError
from cxr14.files import write_text
from cxr14.judging.bootstrap import paired_resamples, patient_codes, percentile_interval, resample_means
from cxr14.judging.delong import delong, holm
from cxr14.judging.mapping import align as map_labels
from cxr14.judging.metrics import auroc_columns, mean_defined, optional
from cxr14.model.decision import apply_temperature

log = logging.getLogger(__name__)
RESULT_FILES = ("comparison.json", "comparison.csv", "report.html")


@dataclass(frozen=True)
class Scored:
    """One model's probabilities on a set of images, with the images' patients and labels."""

    name: str  # as the user named it
    how: str  # "scored on DATA_DIR" or "predictions reused from FILE"
    images: np.ndarray  # str [N]
    patients: np.ndarray  # [N]
    labels: tuple[str, ...]
    targets: np.ndarray  # int8 [N, K]: 1, 0 or UNKNOWN
    probs: np.ndarray  # float64 [N, K]
    checkpoint: Path | None = None  # what can be scored again when reused predictions do not fit

    def as_split(self, name: str) -> Split:
        """These images, patients and labels as a split (no demographics), to score a predictions file on."""
        n = len(self.images)
        unknown = Demographics(np.full(n, ""), np.full(n, -1), np.full(n, ""))
        return Split(name, self.images, self.targets, self.patients, unknown, self.labels)

    def take(self, images: np.ndarray, labels: tuple[str, ...]) -> Scored:
        """The rows of `images` (in that order) and the columns of `labels`."""
        row = {name: i for i, name in enumerate(self.images)}
        rows = np.array([row[n] for n in images], dtype=np.int64)
        cols = [self.labels.index(k) for k in labels]
        return Scored(self.name, self.how, self.images[rows], self.patients[rows], labels,
                      self.targets[rows][:, cols], self.probs[rows][:, cols], self.checkpoint)  # fmt: skip


def predictions_file(folder: Path, split: str) -> Path | None:
    """SPLIT_predictions.csv of an evaluation or training run folder, if `folder` is one."""
    found = folder / f"{split}_predictions.csv"
    return found if folder.is_dir() and (folder / "metrics.json").is_file() and found.is_file() else None


def read_predictions(path: Path, name: str, split: str) -> Scored:
    """A predictions CSV as `evaluate.write_outputs` writes it: image, patient, a column per finding, true_*."""
    try:
        frame = pd.read_csv(path, dtype={"image": str})
    except (OSError, ValueError) as exc:
        raise UserError(f"Cannot read the predictions {path} ({type(exc).__name__}: {exc}).") from exc
    labels = tuple(c for c in frame.columns if f"true_{c}" in frame.columns)
    if "image" not in frame.columns or "patient" not in frame.columns or not labels:
        raise UserError(
            f"{path} is not a predictions file of cxr14 evaluate or train (columns image, patient, one per finding "
            f"and true_<finding>); pass the evaluation folder that holds it, or the checkpoint with --data_dir."
        )
    folder = path.parent
    checkpoint = folder / "best_model.pth"
    if not checkpoint.is_file():
        card = json.loads((folder / "metrics.json").read_text()).get("model") or {}
        checkpoint = Path(card["checkpoint"]) if card.get("checkpoint") else None
    return Scored(
        name, f"{split} predictions reused from {path}", frame["image"].to_numpy(dtype=str),
        frame["patient"].to_numpy(), labels, frame[[f"true_{k}" for k in labels]].to_numpy(dtype=np.int8),
        frame[list(labels)].to_numpy(dtype=np.float64), checkpoint if checkpoint and checkpoint.exists() else None,
    )  # fmt: skip


def is_predictions_file(spec: Path) -> bool:
    """A CSV of another tool's predictions (`judging.external`), as opposed to a model or a folder."""
    return spec.suffix.lower() == ".csv" and spec.is_file()


def score_file(spec: Path, name: str, cfg: CompareConfig, reference: Scored | None) -> Scored:
    """A predictions file on the films the other models were scored on (`reference`), or, when every model is a
    file, on cfg.split of --data_dir as --dataset reads it (training's defaults for a seeded split)."""
    from cxr14.data.pipeline.loaders import load_splits
    from cxr14.judging.evaluate import file_data_config
    from cxr14.judging.external import on_split, read_file

    file = read_file(spec)
    if reference is not None:
        split = reference.as_split(cfg.split)
    elif cfg.data_dir is None:
        raise UserError(f"{spec} is a file of predictions: pass --data_dir (and --dataset) for the films and labels it "
                        f"is scored against, or compare it with a model scored there.")  # fmt: skip
    else:
        split = load_splits(file_data_config(cfg))[cfg.split]
    split, logits, record = on_split(file, split, cfg.intersect)
    split, logits, _, _ = map_labels(file.labels, split, logits, None, cfg.approximate)
    how = f"predictions file {spec} (sha256 {file.sha256[:12]}), {record['scored']:,} films"
    return Scored(name, how, split.names, split.patients, split.label_names, split.labels.astype(np.int8),
                  expit(logits))  # fmt: skip


def score_on_data(spec: Path, name: str, cfg: CompareConfig) -> Scored:
    """A model scored on cfg.split of cfg.data_dir through the one inference pass, split as its run split it."""
    from cxr14.judging.evaluate import data_config_for, predict_split
    from cxr14.model.loading import load_model

    if cfg.data_dir is None:
        raise UserError(
            f"{spec} is a model, not a folder of predictions: pass --data_dir (the dataset to score it on), or the "
            f"evaluation folder that cxr14 evaluate wrote for it."
        )
    model = load_model(spec, cfg.device)
    train_cfg = data_config_for(cfg, model.card["config"])
    data = build_datasets(train_cfg, (cfg.split,))[cfg.split]
    split, pred = predict_split(model, data.dataset, data.split, train_cfg)
    # The data's labels, scored by the model's outputs that stand for them (its own labels on its own data); none in
    # common is refused by name, not later as "no image in common".
    split, logits, calibration, _ = map_labels(model.labels, split, pred.logits, model.calibration, cfg.approximate)
    probs = apply_temperature(logits, calibration.temperature if calibration is not None else None)
    how = f"scored on the {cfg.split} split of {cfg.data_dir}"
    return Scored(name, how, split.names, split.patients, split.label_names, split.labels.astype(np.int8),
                  np.asarray(probs, dtype=np.float64), spec)  # fmt: skip


def gather(cfg: CompareConfig) -> list[Scored]:
    """Every model's predictions; reused ones that are not of the reference images are scored again if they can be.

    The reference is the first model scored on --data_dir. When every model is a folder and their images differ
    (say, runs whose --max_test_samples drew different subsets), each folder with a checkpoint is scored on
    --data_dir, so that all end up on the whole split.
    """
    scored: list[Scored | None] = []
    reused: list[bool] = []
    for spec in cfg.models:
        found = predictions_file(spec, cfg.split)
        if is_predictions_file(spec):  # scored below, on the others' films
            scored.append(None)
        else:
            scored.append(read_predictions(found, str(spec), cfg.split) if found else score_on_data(spec, str(spec),
                                                                                                   cfg))  # fmt: skip
        reused.append(found is not None)
    models = [s for s in scored if s is not None]
    scored = [s or score_file(spec, str(spec), cfg, models[0] if models else None)
              for s, spec in zip(scored, cfg.models, strict=True)]  # fmt: skip
    return _rescore_differing(scored, reused, cfg)


def _rescore_differing(scored: list[Scored], reused: list[bool], cfg: CompareConfig) -> list[Scored]:
    """Reused predictions of other images than the reference's, scored again from their checkpoints."""
    fresh = [s for s, r in zip(scored, reused, strict=True) if not r]
    reference = set((fresh or scored)[0].images)
    differ = [i for i, s in enumerate(scored) if reused[i] and set(s.images) != reference]
    if differ and not fresh:  # folders of different images: score every one that can be on the data instead
        differ = list(range(len(scored)))
    for i in differ:
        s = scored[i]
        if s.checkpoint is not None and cfg.data_dir is not None:
            log.info("%s: its predictions are not of the same images as the others'; scoring its checkpoint %s on "
                     "--data_dir instead", s.name, s.checkpoint)  # fmt: skip
            scored[i] = score_on_data(s.checkpoint, s.name, cfg)
    for s in scored:
        log.info("%s: %s (%d images)", s.name, s.how, len(s.images))
    return scored


def align(scored: list[Scored], intersect: bool) -> tuple[list[Scored], dict[str, Any]]:
    """The models on the same images (the first's order) and the same findings; what was left out, and why."""
    common = set(scored[0].images).intersection(*(set(s.images) for s in scored[1:]))
    if any(len(s.images) != len(common) for s in scored):
        counts = "; ".join(f"{s.name}: {len(s.images):,}" for s in scored)
        if not intersect or not common:
            raise UserError(
                f"The models' predictions are not of the same images ({counts}; {len(common):,} common to all). "
                f"Compare them on the same split of the same data (pass --data_dir to score them there), or pass "
                f"--intersect to compare on the {len(common):,} common images (said in the output)."
                if common else f"The models' predictions share no image ({counts}): they are of different data."
            )
        log.warning("comparing on the %d images common to all models (%s)", len(common), counts)
    labels = tuple(k for k in scored[0].labels if all(k in s.labels for s in scored[1:]))
    if not labels:
        raise UserError(
            "The models share no finding (" + "; ".join(f"{s.name}: {', '.join(s.labels)}" for s in scored) +
            "): there is nothing to compare."
        )  # fmt: skip
    left_out = sorted({k for s in scored for k in s.labels} - set(labels))
    if left_out:
        log.warning("findings not predicted by every model, left out: %s", ", ".join(left_out))
    order = np.array([n for n in scored[0].images if n in common])
    out = [s.take(order, labels) for s in scored]
    for s in out[1:]:
        if not np.array_equal(s.targets, out[0].targets):
            raise UserError(f"{s.name} and {out[0].name} carry different labels for the same images: they were "
                            f"evaluated against different metadata; score both on the same --data_dir.")  # fmt: skip
    record = {"images": {s.name: len(s.images) for s in scored}, "common": len(common), "intersect": intersect
              and any(len(s.images) != len(common) for s in scored), "findings_left_out": left_out}  # fmt: skip
    return out, record


def compare_pair(a: Scored, b: Scored, cfg: CompareConfig) -> dict[str, Any]:
    """B against A: per finding and for the mean, AUROCs, B - A with its paired interval, DeLong and Holm."""
    level = 0.95
    t = a.targets
    points_a, points_b = auroc_columns(t, a.probs), auroc_columns(t, b.probs)
    samples_a, samples_b = paired_resamples(t, [a.probs, b.probs], a.patients, cfg.n_resamples, cfg.seed)
    diff = samples_b - samples_a
    rows: dict[str, dict[str, Any]] = {}
    p_values = np.full(len(a.labels), np.nan)
    for j, name in enumerate(a.labels):
        if np.isnan(points_a[j]):
            rows[name] = {"auroc_a": None, "auroc_b": None, "difference": None, "ci_low": None, "ci_high": None,
                          "delong_z": None, "p_value": None, "p_holm": None, "n_pos": int(t[:, j].sum())}  # fmt: skip
            continue
        test = delong(t[:, j], a.probs[:, j], b.probs[:, j])
        low, high = percentile_interval(diff[:, j], level)
        p_values[j] = test.p_value
        rows[name] = {"auroc_a": float(points_a[j]), "auroc_b": float(points_b[j]),
                      "difference": float(points_b[j] - points_a[j]), "ci_low": low, "ci_high": high,
                      "delong_z": test.z, "p_value": test.p_value, "n_pos": int(t[:, j].sum())}  # fmt: skip
    for name, adjusted in zip(a.labels, holm(p_values), strict=True):
        rows[name]["p_holm"] = optional(adjusted)
    mean_diff = resample_means(samples_b) - resample_means(samples_a)
    low, high = percentile_interval(mean_diff, level)
    kept = mean_diff[~np.isnan(mean_diff)]
    # Two-sided, with the +1 that keeps a bootstrap p-value from claiming 0 (its resolution is 1 / resamples).
    tail = min(int((kept <= 0).sum()), int((kept >= 0).sum()))
    p_boot = min(1.0, 2 * (tail + 1) / (kept.size + 1)) if kept.size else None
    mean_a, mean_b = mean_defined(points_a), mean_defined(points_b)
    mean = {"auroc_a": mean_a, "auroc_b": mean_b, "difference": None if mean_a is None else mean_b - mean_a,
            "ci_low": low, "ci_high": high, "p_value": p_boot, "p_value_from": "paired patient bootstrap"}  # fmt: skip
    return {"a": a.name, "b": b.name, "per_class": rows, "mean": mean}


def run_compare(cfg: CompareConfig) -> dict[str, Any]:
    """`cxr14 compare`: gather, align, compare every model with the first, write and print the results."""
    first = Path(str(cfg.models[0]).split(",")[0])
    out = cfg.out or first.parent / f"compare-{cfg.split}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_writable("--out", out, folder=True)
    if any((out / f).exists() for f in RESULT_FILES[:2]):
        raise UserError(f"{out} already holds a comparison (comparison.json); pass another --out.")
    scored, record = align(gather(cfg), cfg.intersect)
    base = scored[0]
    result = {
        "split": cfg.split,
        "n_images": len(base.images),
        "n_patients": patient_codes(base.patients)[1],
        "models": [{"name": s.name, "how": s.how} for s in scored],
        "labels": list(base.labels),
        "alignment": record,
        "bootstrap": {"unit": "patient", "paired": True, "n_resamples": cfg.n_resamples, "seed": cfg.seed,
                      "level": 0.95},
        "tests": {"per_finding": "DeLong (Sun & Xu 2014 midrank algorithm), two-sided; Holm-adjusted over the "
                  "findings of each comparison", "mean": "paired patient bootstrap, two-sided"},
        "comparisons": [compare_pair(base, s, cfg) for s in scored[1:]],
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cxr14_version": __version__,
    }
    write_outputs(out, result)
    print(format_table(result))
    log.info("comparison written to %s (%s)", out, ", ".join(RESULT_FILES))
    return result


CSV_FIELDS = ("auroc_a", "auroc_b", "difference", "ci_low", "ci_high", "delong_z", "p_value", "p_holm")


def write_outputs(out: Path, result: dict[str, Any]) -> None:
    """comparison.json, comparison.csv (a row per pair and finding, then the mean) and report.html."""
    from cxr14.judging.report.comparison import write_comparison_report

    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "comparison.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["baseline", "model", "finding", *CSV_FIELDS])
    for c in result["comparisons"]:
        for name, row in [*c["per_class"].items(), ("mean", c["mean"])]:
            writer.writerow([c["a"], c["b"], name, *("" if row.get(k) is None else repr(row[k]) for k in CSV_FIELDS)])
    write_text(out / "comparison.csv", buf.getvalue())
    write_comparison_report(out, result)


def format_table(result: dict[str, Any]) -> str:
    """The terminal's table: one block per comparison."""
    lines = []
    for c in result["comparisons"]:
        lines += [f"{c['b']}  vs  {c['a']} (baseline): {result['split']} split, {result['n_images']:,} images of "
                  f"{result['n_patients']:,} patients",
                  f"{'finding':<20}{'AUROC A':>9}{'AUROC B':>9}{'B - A':>9}{'95% CI (paired)':>20}{'p DeLong':>10}"
                  f"{'p Holm':>9}"]  # fmt: skip
        for name, row in [*c["per_class"].items(), ("mean", c["mean"])]:
            if row["difference"] is None:
                lines.append(f"{name:<20}{'n/a':>9}")
                continue
            ci = f"{row['ci_low']:+.4f} to {row['ci_high']:+.4f}" if row["ci_low"] is not None else "n/a"
            holm_p = row.get("p_holm")
            lines.append(f"{name:<20}{row['auroc_a']:>9.4f}{row['auroc_b']:>9.4f}{row['difference']:>+9.4f}{ci:>20}"
                         f"{_p(row['p_value']):>10}{_p(holm_p) if 'p_holm' in row else '(boot)':>9}")  # fmt: skip
    return "\n".join(lines)


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"
