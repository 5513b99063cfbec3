"""How long do 2,000 patient-bootstrap resamples of all 14 findings take on NIH's official test split size?

Synthetic data the shape of the real split: 25,596 images of 2,797 patients, images per patient
heavy-tailed like the real one (half the patients have one image, the largest about 180), each
finding's positives exactly the test split's count (shared/nih/README.md), labels correlated within a
patient, scores correlated with labels and stored as float32 probabilities (so there are ties).

Prints, in one run: the time of `patient_bootstrap` (what evaluate calls: points, AUPRC, 2,000
resamples, intervals) and, side by side, a plain loop of scikit-learn's roc_auc_score over the
explicitly resampled arrays for a few resamples, extrapolated to all of them, with the ratio and
the largest difference between the two on the resamples both computed. Target: at most 30 s on a
2-core machine. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/bootstrap.py                # --sklearn_resamples 20 --resamples 2000
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from cxr14.judging.bootstrap import image_weights, patient_bootstrap, resampled_aurocs
from cxr14.judging.subgroups import demographic_groups, subgroup_aurocs
from cxr14.labels import NIH_LABELS

#: Positives per finding in the official test split (NIH_LABELS order), from shared/nih/README.md.
TEST_POSITIVES = (3279, 1069, 4658, 6112, 1748, 1623, 555, 2665, 1815, 925, 1093, 435, 1143, 86)


def images_per_patient(n_images: int, n_patients: int, rng: np.random.Generator) -> np.ndarray:
    """Half the patients with one image, the rest log-normal (2..184), adjusted to sum to exactly n_images."""
    several = 1 + np.ceil(np.exp(rng.normal(2.0, 1.1, n_patients)))
    sizes = np.clip(np.where(rng.random(n_patients) < 0.49, 1, several), 1, 184).astype(int)
    while (gap := n_images - sizes.sum()) != 0:
        pick = rng.choice(n_patients, abs(gap), p=sizes / sizes.sum())  # the large grow or shrink most
        np.add.at(sizes, pick, np.sign(gap))
        sizes = np.clip(sizes, 1, 184)
    return sizes


def synthetic_test_split(n_images: int, n_patients: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets [N, 14] uint8, float32 probabilities [N, 14], patient ids [N])."""
    rng = np.random.default_rng(seed)
    owner = np.repeat(np.arange(n_patients), images_per_patient(n_images, n_patients, rng))
    k = len(NIH_LABELS)
    latent = 0.8 * rng.normal(size=(n_patients, k))[owner] + 0.6 * rng.normal(size=(n_images, k))
    positives = np.round(np.array(TEST_POSITIVES) * n_images / 25596).astype(int)
    cut = -np.sort(-latent, axis=0)[positives - 1, np.arange(len(NIH_LABELS))]
    targets = (latent >= cut).astype(np.uint8)
    logits = targets + 0.2 * latent + rng.normal(size=latent.shape) - 2.0
    return targets, expit(logits).astype(np.float32), owner + 1


def sklearn_loop(targets: np.ndarray, scores: np.ndarray, patients: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The plain way: build each resample's arrays and call roc_auc_score per finding."""
    weights = image_weights(patients, n, seed)
    out = np.full((n, targets.shape[1]), np.nan)
    for b in range(n):
        rows = np.repeat(np.arange(len(targets)), weights[b])
        for j in range(targets.shape[1]):
            if 0 < targets[rows, j].sum() < len(rows):
                out[b, j] = roc_auc_score(targets[rows, j], scores[rows, j])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=25596, help="images (default: the official test split's)")
    parser.add_argument("--patients", type=int, default=2797, help="patients (default: the test split's)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--sklearn_resamples", type=int, default=20, help="resamples for the sklearn loop (20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    targets, probs, patients = synthetic_test_split(args.images, args.patients, args.seed)
    sizes = np.bincount(np.unique(patients, return_inverse=True)[1])
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f} (other jobs share the CPU)")
    print(f"data: {len(targets)} images, {len(sizes)} patients (images per patient: median {np.median(sizes):.0f}, "
          f"90th percentile {np.percentile(sizes, 90):.0f}, max {sizes.max()}), {len(NIH_LABELS)} findings, "
          f"{len(np.unique(probs))} distinct scores")  # fmt: skip

    start = time.perf_counter()
    result = patient_bootstrap(targets, probs, patients, n_resamples=args.resamples, seed=args.seed,
                               names=NIH_LABELS)
    fast = time.perf_counter() - start
    ci = f"{result.mean_ci_low:.4f}-{result.mean_ci_high:.4f}"
    print(f"patient_bootstrap, {args.resamples} resamples x {len(NIH_LABELS)} findings: {fast:.2f} s "
          f"(mean AUROC {result.mean_auroc:.4f}, 95% CI {ci})")  # fmt: skip

    rng = np.random.default_rng(args.seed)
    sex = np.where((patients * 7919) % 100 < 42, "F", "M")  # a fixed sex per patient, 42% F as NIH's test
    age = np.clip(rng.normal(47, 17, len(patients)), 1, 95).astype(int)
    view = np.where(rng.random(len(patients)) < 0.57, "AP", "PA")
    groups = demographic_groups(sex=sex, age=age, view=view)
    start = time.perf_counter()
    subgroup_aurocs(targets, probs, patients, groups, n_resamples=args.resamples, seed=args.seed,
                    names=NIH_LABELS)
    n_groups = sum(len(g) for g in groups.values())
    print(f"subgroup_aurocs, sex/age band/view ({n_groups} groups), {args.resamples} resamples each: "
          f"{time.perf_counter() - start:.2f} s")  # fmt: skip

    n = args.sklearn_resamples
    start = time.perf_counter()
    reference = sklearn_loop(targets, probs, patients, n, args.seed)
    slow = (time.perf_counter() - start) * args.resamples / n
    ours = resampled_aurocs(targets, probs, patients, n_resamples=n, seed=args.seed)
    print(f"scikit-learn loop, {n} resamples timed, extrapolated to {args.resamples}: {slow:.0f} s "
          f"({slow / 60:.1f} min); ratio {slow / fast:.0f}x")  # fmt: skip
    print(f"largest |difference| from scikit-learn on those {n} resamples: {np.nanmax(np.abs(ours - reference)):.1e}")


if __name__ == "__main__":
    main()
