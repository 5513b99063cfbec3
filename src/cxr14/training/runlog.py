"""The run folder's per-epoch record: metrics.csv (always) and TensorBoard scalars (with --tensorboard).

The rows live in last.pth as the run's history, and metrics.csv is rewritten from them atomically each epoch:
a run resumed after a kill ends with exactly the rows of one that was never interrupted, never with a row
missing or repeated.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from cxr14.errors import UserError
from cxr14.files import write_text

log = logging.getLogger(__name__)
FIELDS = (
    "epoch",
    "train_loss",
    "val_mean_auroc",
    "val_ema_mean_auroc",
    "best_val_mean_auroc",
    "lr",
    "images_per_s",
    "seconds",
    "n_bad",
)


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """metrics.csv from the history rows (the EMA column only when the run keeps an EMA)."""
    fields = [f for f in FIELDS if f != "val_ema_mean_auroc" or any(r.get(f) is not None for r in rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


class TensorBoard:
    """Per-epoch scalars under OUTPUT_DIR/tensorboard, for watching a long run (`tensorboard --logdir runs`)."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise UserError(
                "--tensorboard needs the tensorboard package: pip install 'cxr14[tensorboard]' (or pip install "
                "tensorboard), or leave --tensorboard off; metrics.csv has the same numbers."
            ) from exc
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def epoch(self, row: dict[str, Any], per_class: dict[str, float | None]) -> None:
        step = int(row["epoch"])
        for key in ("train_loss", "val_mean_auroc", "val_ema_mean_auroc", "lr", "images_per_s"):
            if row.get(key) is not None:
                self.writer.add_scalar(key.replace("_", "/", 1), float(row[key]), step)
        for name, value in per_class.items():
            if value is not None:
                self.writer.add_scalar(f"val_auroc/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
