"""Per-class AUROC and its mean over the findings for which it is defined.

AUROC ranks all scored images at once: it is computed on the whole set (gathered from every
rank), never averaged over batches. A finding with only one class present has no AUROC: it is
reported as undefined (None), left out of the mean, and a warning names it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from cxr14.labels import LABELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AurocResult:
    """Per-finding AUROC (None where undefined), positives per finding, and the defined mean."""

    per_class: dict[str, float | None]
    n_pos: dict[str, int]
    n_images: int

    @property
    def defined(self) -> list[str]:
        return [k for k, v in self.per_class.items() if v is not None]

    @property
    def mean(self) -> float:
        values = [v for v in self.per_class.values() if v is not None]
        return float(np.mean(values)) if values else float("nan")

    def to_json(self, split: str) -> dict:
        """The `metrics.json` layout promised in the README."""
        return {
            "mean_auroc": self.mean,
            "per_class": {k: {"auroc": self.per_class[k], "n_pos": self.n_pos[k]} for k in self.per_class},
            "n_images": self.n_images,
            "split": split,
        }


def auroc(targets: np.ndarray | torch.Tensor, scores: np.ndarray | torch.Tensor) -> AurocResult:
    """AUROC of each column of `scores` [N, 14] against 0/1 `targets` [N, 14]."""
    t = torch.as_tensor(np.asarray(targets)).long()
    s = torch.as_tensor(np.asarray(scores)).double()
    per_class: dict[str, float | None] = {}
    n_pos: dict[str, int] = {}
    for j, name in enumerate(LABELS):
        pos = int(t[:, j].sum())
        n_pos[name] = pos
        if pos == 0 or pos == len(t):
            per_class[name] = None
        else:
            per_class[name] = float(binary_auroc(s[:, j], t[:, j]))
    undefined = [k for k, v in per_class.items() if v is None]
    if undefined:
        log.warning(
            "AUROC undefined (only one class present in %d images) for: %s; left out of the mean",
            len(t),
            ", ".join(undefined),
        )
    return AurocResult(per_class=per_class, n_pos=n_pos, n_images=len(t))


def format_table(result: AurocResult, title: str) -> str:
    """A plain-text per-class table, for the terminal and the log."""
    lines = [title, f"{'finding':<20}{'AUROC':>8}{'n_pos':>8}"]
    for name in result.per_class:
        value = result.per_class[name]
        shown = f"{value:.4f}" if value is not None else "  n/a"
        lines.append(f"{name:<20}{shown:>8}{result.n_pos[name]:>8}")
    lines.append(f"{'mean':<20}{result.mean:>8.4f}   ({len(result.defined)} of {len(result.per_class)} defined)")
    return "\n".join(lines)
