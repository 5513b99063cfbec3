"""Calibration: per-finding temperature scaling, reliability bins and expected calibration error.

A network trained with focal or asymmetric loss ranks well but its probabilities are not
frequencies. One temperature per finding, fitted on validation logits (binary cross-entropy of
sigmoid(logit / T)), keeps the ranking (AUROC unchanged) and makes "0.7" mean roughly 70%.
`model.decision.apply_temperature` is the one place where probabilities are made from logits.

ECE here: 10 equal-width bins on [0, 1] (bin i holds i/10 <= p < (i+1)/10, the last also p = 1),
ECE = sum over bins of (images in bin / images) * |mean predicted - observed frequency|, per finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from cxr14.judging.metrics import as_arrays, defined_findings, optional

#: The temperature search range: wide enough for any trained network, bounded so a degenerate
#: finding (all logits equal) cannot run off to zero or infinity.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def _bce(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy of sigmoid(logits), computed stably from the logits."""
    return float(np.mean(np.logaddexp(0.0, logits) - targets * logits))


def fit_temperature(targets: Any, logits: Any, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> np.ndarray:
    """[K] temperature T > 0 per finding minimising the BCE of sigmoid(logits / T); 1.0 where one class only.

    Searched on log T (bounded scalar minimisation), which is smooth and keeps T positive.
    """
    t, z = as_arrays(targets, logits)
    out = np.ones(t.shape[1])
    log_bounds = (float(np.log(bounds[0])), float(np.log(bounds[1])))
    for j in np.flatnonzero(defined_findings(t)):
        keep = t[:, j] >= 0  # the known labels only
        y, x = t[keep, j].astype(np.float64), z[keep, j]
        best = minimize_scalar(
            lambda u, x=x, y=y: _bce(x * np.exp(-u), y), bounds=log_bounds, method="bounded", options={"xatol": 1e-6}
        )
        out[j] = float(np.exp(best.x))
    return out


@dataclass(frozen=True, eq=False)
class Reliability:
    """Per finding and bin: mean predicted probability and observed frequency (NaN in empty bins), and counts."""

    names: tuple[str, ...]
    edges: np.ndarray  # [n_bins + 1]
    mean_predicted: np.ndarray  # [K, n_bins]
    observed: np.ndarray  # [K, n_bins]
    count: np.ndarray  # [K, n_bins] int

    @property
    def ece(self) -> np.ndarray:
        """[K] expected calibration error, bins weighted by their share of the images."""
        gap = np.where(self.count > 0, np.abs(np.nan_to_num(self.mean_predicted - self.observed)), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):  # a finding with no known label: NaN
            return (gap * self.count).sum(axis=1) / self.count.sum(axis=1)

    def to_json(self) -> dict[str, Any]:
        """ECE per finding, for the per-finding table."""
        return {"per_class": {name: {"ece": optional(e)} for name, e in zip(self.names, self.ece, strict=True)}}

    def bins_json(self) -> dict[str, Any]:
        """The reliability diagram's data: edges, and per finding the three per-bin lists (None for empty bins)."""

        def plain(row: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else float(v) for v in row]

        return {
            "edges": [float(e) for e in self.edges],
            "per_class": {
                name: {
                    "mean_predicted": plain(self.mean_predicted[k]),
                    "observed": plain(self.observed[k]),
                    "count": [int(c) for c in self.count[k]],
                }
                for k, name in enumerate(self.names)
            },
        }


def reliability_bins(targets: Any, probs: Any, names: Sequence[str], n_bins: int = 10) -> Reliability:
    """Equal-width reliability bins of each finding's probabilities against its known 0/1 targets."""
    t, p = as_arrays(targets, probs)
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("probabilities must lie in [0, 1] (were logits passed? use apply_temperature first)")
    if n_bins < 1 or len(names) != t.shape[1]:
        raise ValueError(f"need n_bins >= 1 and one name per column, got {n_bins} bins, {len(names)} names")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)  # p = 1 joins the last bin
    flat = (bins + n_bins * np.arange(t.shape[1])).ravel()  # one bincount for every finding at once
    size = n_bins * t.shape[1]
    known = (t >= 0).ravel().astype(np.float64)  # an UNKNOWN label counts in no bin
    count = np.bincount(flat, weights=known, minlength=size).reshape(-1, n_bins).astype(np.int64)
    sum_p = np.bincount(flat, weights=p.ravel() * known, minlength=size).reshape(-1, n_bins)
    sum_y = np.bincount(flat, weights=(t.ravel() == 1) * known, minlength=size).reshape(-1, n_bins)
    with np.errstate(invalid="ignore"):
        return Reliability(tuple(names), edges, sum_p / count, sum_y / count, count)


def expected_calibration_error(targets: Any, probs: Any, n_bins: int = 10) -> np.ndarray:
    """[K] ECE per finding (equal-width bins, weighted by bin counts); see the module docstring."""
    return reliability_bins(targets, probs, tuple(str(k) for k in range(np.shape(targets)[1])), n_bins).ece
