"""How long does `cxr14 compare`'s statistics take for two models on NIH's official test split size?

Two synthetic models on the synthetic test split of benchmarks/bootstrap.py (25,596 images, 2,797 patients,
14 findings, the real positives per finding): model B sees the labels a little better than model A, and the
two share most of their noise, as two recipes trained on the same data do.

Times, side by side in one run:
- DeLong's test of every finding: the midrank algorithm (`judging.delong`, Sun & Xu 2014) against the
  definition (the positive-by-negative kernel, O(m x n) per finding), and their largest difference;
- 2,000 paired patient-bootstrap resamples (`bootstrap.paired_resamples`: both models on the same patients)
  against a plain loop of scikit-learn's roc_auc_score on the explicitly resampled arrays of both models,
  timed on a few resamples and extrapolated, with the largest difference on those.
Targets: DeLong for all findings <= 1 s, 2,000 paired resamples <= 5 s on a 2-core machine. Prints figures,
asserts nothing.

    .venv/bin/python benchmarks/compare.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bootstrap import sklearn_loop, synthetic_test_split

from cxr14.judging.bootstrap import paired_resamples
from cxr14.judging.delong import delong


def two_models(n_images: int, n_patients: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(targets, probabilities of A, of B, patients): B leans 5% more on the labels, shared noise."""
    targets, probs, patients = synthetic_test_split(n_images, n_patients, seed)
    rng = np.random.default_rng(seed + 1)
    logit = np.log(probs / (1 - probs))
    b = expit(logit + 0.05 * targets + 0.3 * rng.normal(size=logit.shape)).astype(np.float32)
    return targets, probs, b, patients


def delong_by_definition(y: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 512) -> float:
    """B - A's DeLong z from the pairwise kernel, in chunks of positives so memory stays small."""
    pos, neg = y == 1, y == 0
    parts = []
    for s in (a, b):
        v10 = np.concatenate([((p[:, None] > s[neg]) + 0.5 * (p[:, None] == s[neg])).mean(axis=1)
                              for p in np.array_split(s[pos], max(1, pos.sum() // chunk))])  # fmt: skip
        v01 = np.zeros(neg.sum())
        for p in np.array_split(s[pos], max(1, pos.sum() // chunk)):
            v01 += ((p[:, None] > s[neg]) + 0.5 * (p[:, None] == s[neg])).sum(axis=0)
        parts.append((v10, v01 / pos.sum()))
    (v10a, v01a), (v10b, v01b) = parts
    m, n = len(v10a), len(v01a)
    cov = np.cov(np.stack([v10a, v10b])) / m + np.cov(np.stack([v01a, v01b])) / n
    return float((v10b.mean() - v10a.mean()) / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=25596)
    parser.add_argument("--patients", type=int, default=2797)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--sklearn_resamples", type=int, default=10, help="resamples for the plain loop (10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    targets, a, b, patients = two_models(args.images, args.patients, args.seed)
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}; {len(targets)} images, "
          f"{len(np.unique(patients))} patients, {targets.shape[1]} findings, two models")  # fmt: skip

    start = time.perf_counter()
    fast = [delong(targets[:, j], a[:, j], b[:, j]) for j in range(targets.shape[1])]
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    plain = [delong_by_definition(targets[:, j], a[:, j], b[:, j]) for j in range(targets.shape[1])]
    t_plain = time.perf_counter() - start
    worst = max(abs(f.z - p) for f, p in zip(fast, plain, strict=True))
    print(f"DeLong, all {targets.shape[1]} findings: {t_fast:.3f} s (midranks) vs {t_plain:.1f} s (definition, "
          f"O(m x n)); {t_plain / t_fast:.0f}x; largest |z difference| {worst:.1e}")  # fmt: skip
    print("  z of B - A per finding: " + ", ".join(f"{f.z:.1f}" for f in fast))

    start = time.perf_counter()
    samples_a, samples_b = paired_resamples(targets, [a, b], patients, args.resamples, args.seed)
    t_boot = time.perf_counter() - start
    n = args.sklearn_resamples
    start = time.perf_counter()
    ref_a = sklearn_loop(targets, a, patients, n, args.seed)
    ref_b = sklearn_loop(targets, b, patients, n, args.seed)
    t_loop = (time.perf_counter() - start) * args.resamples / n
    diff = np.nanmax(np.abs((samples_b[:n] - samples_a[:n]) - (ref_b - ref_a)))
    print(f"paired patient bootstrap, {args.resamples} resamples x {targets.shape[1]} findings x 2 models: "
          f"{t_boot:.2f} s vs {t_loop:.0f} s for scikit-learn on the resampled arrays ({n} timed, extrapolated); "
          f"{t_loop / t_boot:.0f}x; largest |difference| of B - A on those {n}: {diff:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
