"""The phantom cohort: patients, follow-ups, co-occurring labels, CSV rows and the patient-wise split."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxr14.labels import NIH_LABELS, decode

_META_STREAM = 2  # SeedSequence domain tag: metadata never shares a stream with images

# --------------------------------------------------------------------------------------------------
# The cohort: patients, follow-ups, labels, metadata and the patient-wise split
# --------------------------------------------------------------------------------------------------

#: Findings that persist across a patient's later follow-ups once they appear.
_CHRONIC = ("Cardiomegaly", "Emphysema", "Fibrosis", "Hernia", "Pleural_Thickening")
#: Per-patient chance of each chronic finding (compressed from NIH so every label has positives).
_CHRONIC_P = (0.065, 0.06, 0.055, 0.05, 0.06)
#: Acute findings: weight as the main finding of an episode (NIH's order, compressed).
_ACUTE = ("Infiltration", "Effusion", "Atelectasis", "Nodule", "Mass", "Pneumothorax", "Consolidation",
          "Edema", "Pneumonia")  # fmt: skip
_ACUTE_W = (0.2, 0.14, 0.15, 0.12, 0.12, 0.1, 0.09, 0.08, 0.11)
#: (finding, co-finding, chance): NIH's common pairs (fluid with collapse and failure, mass with nodule...).
_COOCCUR = (
    ("Effusion", "Atelectasis", 0.3), ("Effusion", "Infiltration", 0.2), ("Effusion", "Edema", 0.12),
    ("Atelectasis", "Effusion", 0.3), ("Atelectasis", "Infiltration", 0.2),
    ("Mass", "Nodule", 0.3), ("Nodule", "Mass", 0.2), ("Nodule", "Infiltration", 0.1),
    ("Pneumonia", "Infiltration", 0.4), ("Pneumonia", "Consolidation", 0.25), ("Pneumonia", "Effusion", 0.15),
    ("Consolidation", "Effusion", 0.25), ("Consolidation", "Atelectasis", 0.25), ("Consolidation", "Pneumonia", 0.2),
    ("Infiltration", "Pneumonia", 0.1),
    ("Edema", "Effusion", 0.4), ("Edema", "Infiltration", 0.3),
    ("Cardiomegaly", "Effusion", 0.2), ("Cardiomegaly", "Edema", 0.12),
    ("Emphysema", "Pneumothorax", 0.12), ("Pneumothorax", "Effusion", 0.1),
)  # fmt: skip
#: Common (width, height, pixel spacing) of the originals, as NIH lists them, with rough weights.
_ORIGINALS = (
    (("2500", "2048", "0.168"), 30), (("2992", "2991", "0.143"), 22), (("3056", "2544", "0.139"), 15),
    (("2500", "2048", "0.171"), 7), (("2048", "2500", "0.168"), 6), (("2021", "2021", "0.194311"), 4),
    (("2048", "2500", "0.171"), 3), (("2544", "3056", "0.139"), 2),
)  # fmt: skip
_FOLLOWUP_P = (0.28, 0.17, 0.13, 0.1, 0.09, 0.08, 0.08, 0.07)  # 1..8 images per patient, skewed
_TEST_ABNORMAL = 0.33  # share of patients with any finding that go to test ...
_TEST_NORMAL = 0.1  # ... and of those without: ~23% of all patients, a sicker test split, as NIH's


@dataclass(frozen=True)
class Cohort:
    """Everything about a phantom dataset except the pixels; cheap to make, so tests check it directly."""

    names: list[str]
    labels: np.ndarray  # (n_images, 14) uint8, NIH_LABELS order
    patient: np.ndarray  # (n_images,) int
    followup: np.ndarray
    rows: list[str]  # the CSV lines, without line endings
    test_patients: frozenset[int]

    @property
    def is_test(self) -> np.ndarray:
        return np.isin(self.patient, sorted(self.test_patients))


def _episode(r: np.random.Generator, present: set[str]) -> set[str]:
    """One acute episode: a main finding by NIH-like weight, then the findings that go with it."""
    found = {_ACUTE[r.choice(len(_ACUTE), p=np.array(_ACUTE_W) / sum(_ACUTE_W))]}
    if r.random() < 0.6:  # an unrelated second finding
        found.add(_ACUTE[r.choice(len(_ACUTE), p=np.array(_ACUTE_W) / sum(_ACUTE_W))])
    return found | _co_findings(r, found | present)


def _co_findings(r: np.random.Generator, found: set[str]) -> set[str]:
    return {b for a, b, p in _COOCCUR if a in found and r.random() < p}


def _patient_labels(r: np.random.Generator, n: int) -> list[set[str]]:
    """Labels of one patient's n follow-ups: chronic findings persist from their onset, acute ones come,
    sometimes linger one more film, and go."""
    onsets = {}
    for name, p in zip(_CHRONIC, _CHRONIC_P, strict=True):
        if r.random() < p * (0.4 + 0.2 * n):  # the chronically ill come back more often
            onsets[name] = 0 if r.random() < 0.6 else int(r.integers(n))
    sick = r.beta(1.5, 3.2) * (0.7 + 0.06 * n)  # how often this patient has an acute episode
    out, acute = [], set()
    for k in range(n):
        chronic = {name for name, start in onsets.items() if start <= k}
        if acute and r.random() < 0.4:
            # sorted: set order varies between processes, the random draws must not
            acute = {a for a in sorted(acute) if r.random() < (0.9 if a in ("Mass", "Nodule") else 0.7)}
        else:
            acute = _episode(r, chronic) if r.random() < sick else set()
        out.append(chronic | acute | _co_findings(r, chronic))
    return out


def sample_cohort(n_patients: int, seed: int) -> Cohort:
    """Draw patients, follow-ups, labels, metadata and the split, without rendering anything.

    The test split is drawn by patient, favouring sick patients with many follow-ups, as NIH's is (its
    test split is sicker and holds 9 images per patient): ~23% of the patients, ~35% of the images.
    """
    r = np.random.default_rng(np.random.SeedSequence([_META_STREAM, seed]))
    dims = [d for d, _ in _ORIGINALS]
    dim_p = np.array([w for _, w in _ORIGINALS], dtype=float)
    names, labels, patient, followup, rows = [], [], [], [], []
    counts = 1 + r.choice(len(_FOLLOWUP_P), size=n_patients, p=np.array(_FOLLOWUP_P) / sum(_FOLLOWUP_P))
    for pid, n in enumerate(counts, start=1):
        age, sex = int(np.clip(r.normal(47, 17), 1, 94)), "M" if r.random() < 0.56 else "F"
        for k, found in enumerate(_patient_labels(r, int(n))):
            vec = np.array([name in found for name in NIH_LABELS], dtype=np.uint8)
            name = f"{pid:08d}_{k:03d}.png"
            view = "AP" if r.random() < 0.3 + 0.2 * bool(found) else "PA"
            w, h, sp = dims[r.choice(len(dims), p=dim_p / dim_p.sum())]
            age += int(r.random() < 0.3)
            rows.append(f"{name},{decode(vec)},{k},{pid},{age},{sex},{view},{w},{h},{sp},{sp}")
            names.append(name)
            labels.append(vec)
            patient.append(pid)
            followup.append(k)
    labels_arr = np.array(labels, dtype=np.uint8).reshape(-1, len(NIH_LABELS))
    patient_arr = np.array(patient)
    return Cohort(
        names=names,
        labels=labels_arr,
        patient=patient_arr,
        followup=np.array(followup),
        rows=rows,
        test_patients=_split(r, labels_arr, patient_arr, counts),
    )


def _split(r: np.random.Generator, labels: np.ndarray, patient: np.ndarray, counts: np.ndarray) -> frozenset[int]:
    """Pick test patients, stratified by each patient's rarest finding, favouring many follow-ups.

    Stratifying keeps rare, patient-clustered findings (Hernia) from landing almost all on one side;
    favouring sick patients with long histories makes the test split sicker and denser, as NIH's is, and
    gives every finding enough test positives for a stable AUROC.
    """
    per_patient = np.zeros((len(counts), len(NIH_LABELS)), dtype=np.int64)
    np.add.at(per_patient, patient - 1, labels)
    rarity = np.argsort(labels.sum(0), kind="stable")  # label indices, rarest first
    present = per_patient[:, rarity] > 0
    stratum = np.where(present.any(1), present.argmax(1), -1)
    key = r.random(len(counts)) ** (1.0 / counts**1.5)  # weighted sampling without replacement
    test: list[int] = []
    acc = 0.0  # carried across strata, so that many tiny strata still add up to their share
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        share = (_TEST_NORMAL if s < 0 else _TEST_ABNORMAL) * len(members)
        k = math.floor(acc + share) - math.floor(acc)
        acc += share
        test += [int(m) + 1 for m in members[np.argsort(-key[members], kind="stable")[:k]]]
    if not test and len(counts) >= 2:  # tiny cohorts: keep both splits non-empty
        test.append(int(np.argmax(key)) + 1)
    return frozenset(test)
