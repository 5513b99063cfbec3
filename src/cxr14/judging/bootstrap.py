"""AUROC intervals from a bootstrap that resamples patients, fast enough for 2,000 resamples of NIH's test split.

Why patients: NIH's test split holds 2,797 patients with 9 images each on average (up to 184), and a
patient's follow-ups look alike. Resampling images as if independent gives intervals that are too
narrow. Here each resample draws patients with replacement, and a drawn patient brings all of its
images: image i gets the integer weight "how many times its patient was drawn".

Why fast: a weighted AUROC is a rank statistic,
    AUROC_b = sum_{i pos} w_bi * (W_neg below s_i + W_neg tied with s_i / 2) / (W_pos,b * W_neg,b),
and the weights are per patient. Per finding, two sparse matrices built once map patient counts to
"negative weight in each score segment" (H) and "positive weight at each rank boundary" (Q), so one
resample costs a sparse product over the images and a cumulative sum over the distinct ranks of the
positives, vectorised over a chunk of resamples. The result equals scikit-learn's roc_auc_score on
the explicitly resampled arrays, ties included (tested); see benchmarks/bootstrap.py for the speed.

Intervals are percentile intervals. The mean AUROC's interval takes, in each resample, the mean over
the findings defined in that resample (both classes drawn) among those defined on the full set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import sparse

from cxr14.judging.metrics import as_arrays, auprc_columns, auroc_columns, defined_findings, mean_defined, optional

#: Memory for one chunk of resamples (weights and per-finding work arrays); 2,000 resamples of the
#: official test split fit in a few chunks of this size.
CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class FindingAuroc:
    """One finding: AUROC with its interval, AUPRC, prevalence and positives (None where undefined)."""

    auroc: float | None
    ci_low: float | None
    ci_high: float | None
    auprc: float | None
    prevalence: float  # among the known labels
    n_pos: int
    n_unknown: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BootstrapResult:
    """Per-finding AUROC intervals and the mean AUROC's, with what they were computed on."""

    per_class: dict[str, FindingAuroc]
    mean_auroc: float | None
    mean_ci_low: float | None
    mean_ci_high: float | None
    n_images: int
    n_patients: int
    n_resamples: int
    level: float
    seed: int

    @property
    def defined(self) -> list[str]:
        return [k for k, v in self.per_class.items() if v.auroc is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "mean_auroc": self.mean_auroc,
            "mean_auroc_ci": [self.mean_ci_low, self.mean_ci_high],
            "n_images": self.n_images,
            "n_patients": self.n_patients,
            "bootstrap": {"unit": "patient", "n_resamples": self.n_resamples, "level": self.level, "seed": self.seed},
            "per_class": {name: row.to_json() for name, row in self.per_class.items()},
        }


def patient_codes(patients: Any) -> tuple[np.ndarray, int]:
    """(code of each image's patient in 0..P-1, in sorted patient-id order; P)."""
    ids = np.asarray(patients)
    if ids.ndim != 1:
        raise ValueError(f"patients must be one id per image, got shape {ids.shape}")
    unique, codes = np.unique(ids, return_inverse=True)
    return codes.reshape(-1), len(unique)


def resample_counts(n_patients: int, n_resamples: int, seed: int) -> np.ndarray:
    """[B, P] int32: how often each patient is drawn in each resample.

    Resample b has its own generator spawned from `seed` (numpy's SeedSequence), so it is the same
    whatever the chunking, and a test can rebuild it alone.
    """
    return _counts(np.random.SeedSequence(seed).spawn(n_resamples), n_patients)


def _counts(children: list[np.random.SeedSequence], n_patients: int) -> np.ndarray:
    out = np.empty((len(children), n_patients), dtype=np.int32)
    for row, child in enumerate(children):
        draws = np.random.default_rng(child).integers(0, n_patients, n_patients)
        out[row] = np.bincount(draws, minlength=n_patients)
    return out


def image_weights(patients: Any, n_resamples: int, seed: int) -> np.ndarray:
    """[B, N] int32: the weight of each image in each resample, its patient's draw count."""
    codes, n_patients = patient_codes(patients)
    return resample_counts(n_patients, n_resamples, seed)[:, codes]


def _rank_operators(y: np.ndarray, s: np.ndarray, codes: np.ndarray, n_patients: int) -> tuple[Any, Any]:
    """Sparse H [R, P] and Q [R, P] for one finding, R = distinct rank boundaries of the positives.

    With c [P, B] the patient counts, cumsum(H @ c)[r] is the negative weight strictly below boundary
    r, and the AUROC numerator (times 2) is sum_r cumsum(H @ c)[r] * (Q @ c)[r]: each positive adds its
    weight at its "strictly below" boundary and at its "below or tied" boundary.
    """
    neg = y == 0
    levels = np.unique(s[neg])
    lo = np.searchsorted(levels, s[~neg], "left")
    hi = np.searchsorted(levels, s[~neg], "right")
    bounds = np.unique(np.concatenate([lo, hi]))
    segment = np.searchsorted(bounds, np.searchsorted(levels, s[neg]), "right")
    keep = segment < len(bounds)  # negatives above every positive never count
    shape = (len(bounds), n_patients)
    h = sparse.csr_array((np.ones(int(keep.sum())), (segment[keep], codes[neg][keep])), shape=shape)
    rows = np.concatenate([np.searchsorted(bounds, lo), np.searchsorted(bounds, hi)])
    q = sparse.csr_array((np.ones(len(rows)), (rows, np.tile(codes[~neg], 2))), shape=shape)
    h.sum_duplicates()
    q.sum_duplicates()
    return h, q


def resampled_aurocs(
    targets: Any, scores: Any, patients: Any, n_resamples: int = 2000, seed: int = 0, chunk_bytes: int = CHUNK_BYTES
) -> np.ndarray:
    """[B, K] AUROC of every finding in every patient resample; NaN where a resample drew one class only.

    Columns undefined on the full set are NaN throughout. Deterministic for a seed, whatever the chunk size.
    """
    t, s = as_arrays(targets, scores)
    codes, n_patients = patient_codes(patients)
    if len(codes) != len(t):
        raise ValueError(f"patients has {len(codes)} entries for {len(t)} images")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    columns = np.flatnonzero(defined_findings(t))
    known = t >= 0  # an UNKNOWN label is left out of its finding: each finding ranks its known images only
    ops = {j: _rank_operators(t[known[:, j], j], s[known[:, j], j], codes[known[:, j]], n_patients) for j in columns}
    pos = np.stack([np.bincount(codes, weights=t[:, j] == 1, minlength=n_patients) for j in range(t.shape[1])])
    neg = np.stack([np.bincount(codes, weights=t[:, j] == 0, minlength=n_patients) for j in range(t.shape[1])])
    widest = max((h.shape[0] for h, _ in ops.values()), default=0)
    chunk = max(1, int(chunk_bytes // (8 * (n_patients + 3 * widest))))
    children = np.random.SeedSequence(seed).spawn(n_resamples)
    out = np.full((n_resamples, t.shape[1]), np.nan)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        c = np.ascontiguousarray(_counts(children[start:stop], n_patients).T, dtype=np.float64)
        w_pos, w_neg = pos @ c, neg @ c
        for j, (h, q) in ops.items():
            below = h @ c
            np.cumsum(below, axis=0, out=below)  # in place: no second array of this size
            numerator = np.einsum("rb,rb->b", below, q @ c)
            denominator = 2.0 * w_pos[j] * w_neg[j]
            out[start:stop, j] = numerator / np.where(denominator > 0, denominator, np.nan)
    return out


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float | None, float | None]:
    """(low, high) percentile interval of the non-NaN samples; (None, None) when there are none."""
    kept = samples[~np.isnan(samples)]
    if not kept.size:
        return None, None
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(kept, [tail, 1.0 - tail])
    return float(low), float(high)


def resample_means(samples: np.ndarray) -> np.ndarray:
    """[B] each resample's mean AUROC over the findings defined in it (NaN where none is)."""
    counted = ~np.isnan(samples)
    with np.errstate(invalid="ignore"):
        return np.where(counted, samples, 0.0).sum(axis=1) / counted.sum(axis=1)


def paired_resamples(
    targets: Any, scores: Sequence[Any], patients: Any, n_resamples: int = 2000, seed: int = 0
) -> list[np.ndarray]:
    """[B, K] resampled AUROCs of each model's scores, every model on the SAME resampled patients.

    Pairing comes from the seed: resample b draws its patients from the b-th generator spawned from `seed`
    (`resample_counts`), whatever the scores, so row b of every model's array is the same set of patients and
    B's row minus A's row is one draw of the paired difference.
    """
    return [resampled_aurocs(targets, s, patients, n_resamples, seed) for s in scores]


def patient_bootstrap(
    targets: Any,
    scores: Any,
    patients: Any,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    names: Sequence[str] = (),
    min_positives: int = 1,
) -> BootstrapResult:
    """Point estimates (scikit-learn's) and patient-bootstrap percentile intervals, per finding and for the mean.

    `min_positives`: a finding with fewer positives (or negatives) is reported as undefined (None)
    and left out of the mean, as one with a single class is; subgroups use it to skip tiny counts.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    t, s = as_arrays(targets, scores)
    if t.shape[1] != len(names):
        raise ValueError(f"{t.shape[1]} columns but {len(names)} names (pass the label set's names)")
    points = auroc_columns(t, s, min_positives)
    auprc = auprc_columns(t, s, min_positives)
    samples = resampled_aurocs(t, s, patients, n_resamples, seed)
    samples[:, np.isnan(points)] = np.nan
    per_class = {}
    for j, name in enumerate(names):
        low, high = percentile_interval(samples[:, j], level) if not np.isnan(points[j]) else (None, None)
        known = t[:, j] >= 0
        prevalence = float((t[known, j] == 1).mean()) if known.any() else 0.0
        per_class[name] = FindingAuroc(
            optional(points[j]), low, high, optional(auprc[j]), prevalence, int((t[:, j] == 1).sum()),
            int((~known).sum()),
        )  # fmt: skip
    mean_low, mean_high = percentile_interval(resample_means(samples), level)
    return BootstrapResult(
        per_class=per_class,
        mean_auroc=mean_defined(points),
        mean_ci_low=mean_low,
        mean_ci_high=mean_high,
        n_images=len(t),
        n_patients=patient_codes(patients)[1],
        n_resamples=n_resamples,
        level=level,
        seed=seed,
    )


def format_intervals(result: BootstrapResult, title: str) -> str:
    """A plain-text per-finding table with intervals, for the terminal and the log."""
    pct = f"{result.level:.0%}"
    lines = [title, f"{'finding':<20}{'AUROC':>8}{pct + ' CI':>19}{'AUPRC':>8}{'n_pos':>8}"]

    def cells(value: float | None, low: float | None, high: float | None) -> str:
        if value is None:
            return f"{'n/a':>8}{'':>19}"
        return f"{value:>8.4f}" + (f"{low:>10.4f}-{high:.4f}" if low is not None else f"{'':>19}")

    for name, row in result.per_class.items():
        auprc = f"{row.auprc:>8.4f}" if row.auprc is not None else f"{'n/a':>8}"
        lines.append(f"{name:<20}{cells(row.auroc, row.ci_low, row.ci_high)}{auprc}{row.n_pos:>8}")
    mean = cells(result.mean_auroc, result.mean_ci_low, result.mean_ci_high)
    lines.append(f"{'mean':<20}{mean}   ({len(result.defined)} of {len(result.per_class)} defined)")
    lines.append(f"{result.n_images} images of {result.n_patients} patients; {result.n_resamples} patient resamples")
    return "\n".join(lines)
