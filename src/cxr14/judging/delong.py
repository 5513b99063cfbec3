"""DeLong's test for two correlated AUROCs (the same images scored by two models), and Holm's adjustment.

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of AUROCs computed on the same cases from
their "structural components": for positive i, V10_i = the share of negatives it outranks (ties half); for
negative j, V01_j = the share of positives that outrank it. Sun & Xu (2014) showed that these come from
three midrank computations - over the positives, over the negatives, and over both together - so the test
costs O(N log N) per finding instead of the O(m x n) pairwise comparison. With S10, S01 the covariance
matrices of the two models' components, Var(AUC_B - AUC_A) = c' (S10 / m + S01 / n) c with c = (-1, 1),
z = difference / its standard error, and the two-sided p-value comes from the normal distribution.

DeLong treats images as independent: a patient's follow-ups are not, so its p-values read a little small on
NIH; the paired patient bootstrap beside it (`bootstrap.paired_differences`) respects patients, and its
interval is the one to quote.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata


@dataclass(frozen=True)
class DelongResult:
    """Model B against model A on one finding."""

    auroc_a: float
    auroc_b: float
    difference: float  # B - A
    std_error: float
    z: float
    p_value: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def structural_components(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(AUROC [M], V10 [M, m], V01 [M, n]) of M models' scores [N, M] for 0/1 targets [N] (Sun & Xu's midranks)."""
    y = np.asarray(targets).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y], s[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        raise ValueError("DeLong's test needs both classes present")
    tx = rankdata(pos, axis=0)  # midranks among the positives
    ty = rankdata(neg, axis=0)  # among the negatives
    tz = rankdata(np.concatenate([pos, neg]), axis=0)  # among all
    auroc = (tz[:m].sum(axis=0) - m * (m + 1) / 2) / (m * n)
    v10 = ((tz[:m] - tx) / n).T
    v01 = (1.0 - (tz[m:] - ty) / m).T
    return auroc, v10, v01


def delong(targets: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> DelongResult:
    """DeLong's test of AUROC(B) = AUROC(A) on the same images (two-sided)."""
    auroc, v10, v01 = structural_components(targets, np.stack([scores_a, scores_b], axis=1))
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.cov(v10) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(v01) if n > 1 else np.zeros((2, 2))
    cov = s10 / m + s01 / n
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    difference = float(auroc[1] - auroc[0])
    if variance <= 1e-18:  # identical rankings (or a degenerate split): no spread to test against
        z, p = (0.0, 1.0) if abs(difference) < 1e-12 else (float(np.sign(difference) * np.inf), 0.0)
        return DelongResult(float(auroc[0]), float(auroc[1]), difference, 0.0, z, p)
    se = float(np.sqrt(variance))
    z = difference / se
    return DelongResult(float(auroc[0]), float(auroc[1]), difference, se, z, float(2 * norm.sf(abs(z))))


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries are left out of the family and stay NaN).

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) * p_(j)); it controls the
    family-wise error rate without assuming the tests independent.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    kept = np.flatnonzero(~np.isnan(p))
    order = kept[np.argsort(p[kept], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
