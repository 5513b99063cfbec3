"""Point estimates per finding (AUROC, AUPRC, prevalence, positives) and the mean over defined findings.

AUROC ranks all scored images at once: it is computed on the whole set (gathered from every
rank), never averaged over batches. A finding with only one class present has no AUROC: it is
reported as undefined (None), left out of the mean, and a warning names it.

Point estimates are scikit-learn's own (`roc_auc_score`, `average_precision_score`), so a reader
who recomputes them from test_predictions.csv gets the same digits. Intervals live in bootstrap.py,
thresholds in thresholds.py, calibration in calibration.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from cxr14.errors import UserError
from cxr14.labels import UNKNOWN

log = logging.getLogger(__name__)


def as_arrays(targets: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checked copies: targets as int8 [N, K] (1, 0 or UNKNOWN) and finite scores as float64 [N, K].

    Every function of the stats modules takes (targets, scores) in that order, as scikit-learn does;
    targets that are not 1/0/UNKNOWN usually mean the two were swapped, and the error says so. An UNKNOWN label
    counts nowhere: each finding is scored on the images whose label for it is known.
    """
    t, s = np.asarray(targets), np.asarray(scores, dtype=np.float64)
    if t.ndim != 2 or t.shape != s.shape or len(t) == 0:
        raise ValueError(f"targets {t.shape} and scores {s.shape} must be the same non-empty [N, K] shape")
    if not np.isin(t, (0, 1, UNKNOWN)).all():
        raise ValueError("targets must be 1, 0 or -1 (were targets and scores passed the other way round?)")
    bad = ~np.isfinite(s)
    if bad.any():
        column = int(np.flatnonzero(bad.any(axis=0))[0])
        raise UserError(
            f"{int(bad.sum())} of the model's scores are NaN or infinite (first in column {column}): the outputs "
            "are not finite, usually because training diverged or the checkpoint was saved after the loss became "
            "NaN. Score an earlier checkpoint, or retrain with a lower learning rate."
        )
    return t.astype(np.int8), s


def defined_findings(targets: np.ndarray, min_positives: int = 1) -> np.ndarray:
    """[K] bool: a finding is scored when it has at least `min_positives` positives and as many negatives
    among the images whose label is known."""
    n_pos, n_neg = (targets == 1).sum(axis=0), (targets == 0).sum(axis=0)
    return (n_pos >= max(min_positives, 1)) & (n_neg >= max(min_positives, 1))


def auroc_columns(targets: Any, scores: Any, min_positives: int = 1) -> np.ndarray:
    """[K] AUROC of each column (scikit-learn's, ties counted half) on its known labels; NaN where undefined."""
    t, s = as_arrays(targets, scores)
    ok = defined_findings(t, min_positives)
    return np.array([_on_known(roc_auc_score, t[:, j], s[:, j]) if ok[j] else np.nan for j in range(t.shape[1])])


def _on_known(metric: Any, t: np.ndarray, s: np.ndarray) -> float:
    keep = t >= 0
    return float(metric(t[keep], s[keep]))


def auprc_columns(targets: Any, scores: Any, min_positives: int = 1) -> np.ndarray:
    """[K] average precision of each column (scikit-learn's); NaN where AUROC is undefined too."""
    t, s = as_arrays(targets, scores)
    ok = defined_findings(t, min_positives)
    return np.array(
        [_on_known(average_precision_score, t[:, j], s[:, j]) if ok[j] else np.nan for j in range(t.shape[1])]
    )


def mean_defined(values: np.ndarray) -> float | None:
    """Mean over the non-NaN entries; None when there are none (JSON has no NaN)."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else None


def optional(value: float) -> float | None:
    """A plain float, or None for NaN: the form every to_json() uses."""
    return None if np.isnan(value) else float(value)


def merge_json(*parts: dict) -> dict:
    """Merge several results' to_json() into one metrics.json dict.

    Top-level keys sit side by side; "per_class" entries are merged finding by finding, so the
    bootstrap, operating-point and calibration tables become one row per finding. A key given twice
    with different values is a wiring mistake and raises ValueError.
    """
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key == "per_class":
                table = merged.setdefault("per_class", {})
                for name, row in value.items():
                    _merge_into(table.setdefault(name, {}), row, f"per_class.{name}")
            else:
                _merge_into(merged, {key: value}, "")
    return merged


def _merge_into(target: dict, extra: dict, where: str) -> None:
    for key, value in extra.items():
        if key in target and target[key] != value:
            raise ValueError(f"merge_json: {where}{key} given twice with different values")
        target[key] = value


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


def auroc(targets: Any, scores: Any, names: Sequence[str]) -> AurocResult:
    """AUROC of each column of `scores` [N, K] against `targets` [N, K] (1/0/UNKNOWN; numpy or CPU tensors),
    each finding on its known labels; `names` are the K findings."""
    t, s = as_arrays(targets, scores)
    if len(names) != t.shape[1]:
        raise ValueError(f"{len(names)} names for {t.shape[1]} columns")
    values = auroc_columns(t, s)
    per_class = {name: optional(v) for name, v in zip(names, values, strict=True)}
    n_pos = {name: int(n) for name, n in zip(names, (t == 1).sum(axis=0), strict=True)}
    undefined = [k for k, v in per_class.items() if v is None]
    if undefined:
        log.warning(
            "AUROC undefined (only one class among the known labels of %d images) for: %s; left out of the mean",
            len(t),
            ", ".join(undefined),
        )
    return AurocResult(per_class=per_class, n_pos=n_pos, n_images=len(t))
