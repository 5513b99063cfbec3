"""AUROC by sex, age band and view position, each with the patient bootstrap.

These are the gaps CheXclusion (Seyyed-Kalantari et al., 2020) reported on NIH: a model can rank
well overall and worse for women, the very old or the very young, or AP films (taken at the bedside,
of sicker patients). Each group is scored on its own images, resampling its own patients; a patient
whose follow-ups fall in two age bands or views is counted in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxr14.judging.bootstrap import BootstrapResult, patient_bootstrap
from cxr14.judging.metrics import as_arrays

#: (name, lowest age, first age above the band); ages above MAX_AGE are data errors, not a band.
AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("<20", 0, 20),
    ("20-39", 20, 40),
    ("40-59", 40, 60),
    ("60-79", 60, 80),
    ("80+", 80, 10**9),
)
#: The 2017 CSV holds ages up to 414 (16 rows above 100, e.g. 148 and 412): typing errors, not people.
MAX_AGE = 120
UNKNOWN = "unknown"
#: A finding with fewer positives (or negatives) in a group is reported as undefined there.
MIN_POSITIVES = 10

Groups = dict[str, dict[str, np.ndarray]]


def demographic_groups(sex: Any = None, age: Any = None, view: Any = None) -> Groups:
    """Boolean image masks per attribute: {"sex": {"M", "F"}, "age": {bands}, "view": {"PA", "AP"}}.

    Attributes given as None are left out, and so is one that no image carries (a dataset without ages has no
    age groups, not one "unknown" group of every image). Images that fit no group (another sex code, an age that
    is missing, negative or above MAX_AGE, another view) go to an "unknown" group, present only when not empty,
    so each attribute's groups always add up to every image.
    """
    groups: Groups = {}
    if sex is not None:
        groups["sex"] = _by_value(np.char.upper(np.asarray(sex, dtype=str)), ("M", "F"))
    if view is not None:
        groups["view"] = _by_value(np.char.upper(np.asarray(view, dtype=str)), ("PA", "AP"))
    if age is not None:
        years = np.asarray(age, dtype=np.float64)
        valid = np.isfinite(years) & (years >= 0) & (years <= MAX_AGE)
        groups["age"] = {name: valid & (years >= lo) & (years < hi) for name, lo, hi in AGE_BANDS}
        _add_unknown(groups["age"], len(years))
    return {attribute: masks for attribute, masks in groups.items()
            if any(mask.any() for group, mask in masks.items() if group != UNKNOWN)}


def _by_value(values: np.ndarray, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    masks = {key: np.char.strip(values) == key for key in keys}
    _add_unknown(masks, len(values))
    return masks


def _add_unknown(masks: dict[str, np.ndarray], n: int) -> None:
    rest = ~np.logical_or.reduce(list(masks.values()), axis=0) if masks else np.ones(n, dtype=bool)
    if rest.any():
        masks[UNKNOWN] = rest


@dataclass(frozen=True)
class SubgroupResult:
    """{attribute: {group: BootstrapResult}}; each result carries its n_images and n_patients."""

    groups: dict[str, dict[str, BootstrapResult]]
    min_positives: int

    def to_json(self) -> dict[str, Any]:
        return {
            "min_positives": self.min_positives,
            "groups": {a: {g: r.to_json() for g, r in by.items()} for a, by in self.groups.items()},
        }


def subgroup_aurocs(
    targets: Any,
    scores: Any,
    patients: Any,
    groups: Groups,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    names: Sequence[str] = (),
    min_positives: int = MIN_POSITIVES,
) -> SubgroupResult:
    """patient_bootstrap on each group's images (same seed for each); empty groups are left out.

    In each group a finding with fewer than `min_positives` positives or negatives is undefined (None)
    and left out of that group's mean: an AUROC on a handful of cases says little, and its interval
    would mostly reflect which of them a resample happened to draw.
    """
    t, s = as_arrays(targets, scores)
    pid = np.asarray(patients)
    result: dict[str, dict[str, BootstrapResult]] = {}
    for attribute, masks in groups.items():
        result[attribute] = {}
        for group, mask in masks.items():
            rows = np.asarray(mask, dtype=bool)
            if rows.shape != (len(t),):
                raise ValueError(f"mask {attribute}={group} has shape {rows.shape}, expected ({len(t)},)")
            if rows.any():
                result[attribute][group] = patient_bootstrap(
                    t[rows], s[rows], pid[rows], n_resamples, seed, level, names, min_positives
                )
    return SubgroupResult(result, min_positives)
