"""`cxr14 train`: fit on train, select on validation mean AUROC, score the best model on test.

The run folder explains itself: config.json, train.log, metrics.csv (one row per epoch),
last.pth, best_model.pth, metrics.json (test) and test_predictions.csv.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from cxr14 import checkpoint
from cxr14.config import TrainConfig
from cxr14.data.loaders import SplitData, build_datasets, make_loader
from cxr14.data.transforms import AugmentConfig, DeviceTransform
from cxr14.engine import Optim, Precision, predict, resolve_device, resolve_precision, train_one_epoch
from cxr14.errors import UserError
from cxr14.files import write_text
from cxr14.labels import LABELS
from cxr14.loss import LossFn, make_loss
from cxr14.metrics import AurocResult, auroc, format_table
from cxr14.model import DataConfig, check_image_size, create_model

log = logging.getLogger(__name__)
EPOCH_FIELDS = ("epoch", "train_loss", "val_mean_auroc", "best_val_mean_auroc", "lr", "seconds", "n_bad")


@dataclass
class Run:
    """The pieces of one training run, built once by `setup` and passed around."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    precision: Precision
    data: dict[str, SplitData]
    model: torch.nn.Module
    data_config: DataConfig
    optim: Optim
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    loss_fn: LossFn
    loaders: dict[str, DataLoader]
    log_file: logging.Handler
    best: float = -1.0


def prepare_output_dir(cfg: TrainConfig) -> tuple[Path, logging.Handler]:
    """Create the run folder and its train.log; refuse to overwrite the checkpoints of an earlier run."""
    out = cfg.resolved_output_dir()
    if (out / "best_model.pth").exists() or (out / "last.pth").exists():
        raise UserError(
            f"{out} already holds a training run (best_model.pth / last.pth). Choose another --output_dir, "
            f"or move that run away first; cxr14 does not overwrite checkpoints."
        )
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("cxr14").addHandler(handler)
    return out, handler


def setup(cfg: TrainConfig) -> Run:
    """Seed, pick device and precision, build data, model, loss and optimizer."""
    check_image_size(cfg.model, cfg.image_size)  # a size the model cannot take fails before data or a run folder
    torch.manual_seed(cfg.seed)  # initialisation and on-device augmentation; data order has its own generator
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    data = build_datasets(cfg)  # bad data fails here, before a run folder exists
    model, data_config = create_model(cfg.model, cfg.pretrained, cfg.pretrained_path, cfg.image_size)
    out, log_file = prepare_output_dir(cfg)
    cfg.save(out / "config.json")
    log.info("run folder %s; device %s; precision %s", out, device, precision.dtype or "fp32")
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    optim = Optim(optimizer, precision.make_scaler(), cfg.clip_grad)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience
    )
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    log.info("model %s (%.1fM parameters), %d px, loss %s", cfg.model, n_params, cfg.image_size, cfg.loss)
    loaders = {name: make_loader(d.dataset, cfg, train=name == "train", device=device) for name, d in data.items()}
    return Run(
        cfg, out, device, precision, data, model, data_config, optim, scheduler, make_loss(cfg.loss), loaders, log_file
    )


def transforms(run: Run) -> tuple[DeviceTransform, DeviceTransform]:
    """(train, eval) device transforms built from the model's data config."""
    d, cfg = run.data_config, run.cfg
    aug = AugmentConfig(hflip=cfg.hflip) if cfg.augment else None
    return DeviceTransform(d.mean, d.std, d.in_chans, aug), DeviceTransform(d.mean, d.std, d.in_chans, None)


def score(run: Run, split: str, transform: DeviceTransform) -> tuple[AurocResult, dict]:
    """Predict a whole split and compute its AUROC table."""
    pred = predict(run.model, run.loaders[split], transform, run.precision, desc=split, progress=run.cfg.progress)
    if pred["n_bad"]:
        log.warning("%s: %d unreadable image(s) skipped", split, pred["n_bad"])
    return auroc(pred["targets"], pred["probs"]), pred


def save_checkpoints(run: Run, epoch: int, is_best: bool) -> None:
    """last.pth every epoch (with optimizer state for resuming); best_model.pth when it improves."""
    common = {"epoch": epoch, "best_metric": run.best, "config": run.cfg.to_json()}
    state = checkpoint.make_state(
        run.model,
        run.cfg.model,
        run.data_config,
        optimizer=run.optim.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        scaler=run.optim.scaler.state_dict(),
        **common,
    )
    checkpoint.atomic_save(state, run.out / "last.pth")
    if is_best:
        checkpoint.atomic_save(
            checkpoint.make_state(run.model, run.cfg.model, run.data_config, **common),
            run.out / "best_model.pth",
        )


def append_epoch_row(run: Run, row: dict[str, Any]) -> None:
    """One CSV row per epoch in metrics.csv (header written with the first row)."""
    path = run.out / "metrics.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPOCH_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def run_epoch(run: Run, epoch: int, tfs: tuple[DeviceTransform, DeviceTransform]) -> bool:
    """Train one epoch, validate, step the scheduler, checkpoint; True when it improved."""
    cfg, start = run.cfg, time.perf_counter()
    lr_before = run.optim.optimizer.param_groups[0]["lr"]
    stats = train_one_epoch(
        run.model,
        run.loaders["train"],
        (tfs[0], run.loss_fn, run.optim),
        run.precision,
        desc=f"epoch {epoch}/{cfg.num_epochs}",
        progress=cfg.progress,
    )
    val, _ = score(run, "val", tfs[1])
    improved = val.mean > run.best
    run.best = max(run.best, val.mean)
    run.scheduler.step(val.mean)
    lr = run.optim.optimizer.param_groups[0]["lr"]
    save_checkpoints(run, epoch, improved)
    log.info(
        "epoch %d: train loss %.4f, val mean AUROC %.4f (best %.4f%s)%s, %.0fs",
        epoch,
        stats["loss"],
        val.mean,
        run.best,
        ", new best" if improved else "",
        f", lr {lr_before:.2e} -> {lr:.2e}" if lr != lr_before else "",
        time.perf_counter() - start,
    )
    if stats["n_bad"]:
        log.warning("epoch %d: %d unreadable training image(s) skipped", epoch, stats["n_bad"])
    append_epoch_row(
        run,
        {
            "epoch": epoch,
            "train_loss": round(stats["loss"], 6),
            "val_mean_auroc": round(val.mean, 6),
            "best_val_mean_auroc": round(run.best, 6),
            "lr": lr,
            "seconds": round(time.perf_counter() - start, 2),
            "n_bad": stats["n_bad"],
        },
    )
    return improved


def fit(run: Run) -> None:
    """Epochs until --num_epochs or until --patience epochs pass without a better validation AUROC."""
    tfs = transforms(run)
    since_best = 0
    for epoch in range(1, run.cfg.num_epochs + 1):
        since_best = 0 if run_epoch(run, epoch, tfs) else since_best + 1
        if since_best >= run.cfg.patience:
            log.info("early stop: no better validation mean AUROC for %d epochs", since_best)
            break


def test(run: Run) -> AurocResult:
    """Score best_model.pth on the test split; write metrics.json and test_predictions.csv."""
    best = checkpoint.load(run.out / "best_model.pth")
    checkpoint.unwrap(run.model).load_state_dict(best["model"])
    result, pred = score(run, "test", transforms(run)[1])
    print(format_table(result, f"test split, best model (epoch {best['epoch']}), {result.n_images} images"))
    write_text(run.out / "metrics.json", json.dumps(result.to_json("test"), indent=2) + "\n")
    names = run.data["test"].split.names[pred["index"]]
    rows = ["image," + ",".join(LABELS)]
    rows += [f"{n}," + ",".join(f"{p:.6f}" for p in probs) for n, probs in zip(names, pred["probs"], strict=True)]
    write_text(run.out / "test_predictions.csv", "\n".join(rows) + "\n")
    return result


def train(cfg: TrainConfig) -> AurocResult:
    """The whole job behind `cxr14 train` and `python main.py`."""
    run = setup(cfg)
    try:
        fit(run)
        result = test(run)
        log.info("outputs in %s (best_model.pth, metrics.json, metrics.csv)", run.out)
    finally:
        logging.getLogger("cxr14").removeHandler(run.log_file)
        run.log_file.close()
    return result
