"""Scoring against Google's radiologist-adjudicated labels (Majkowska et al., Radiology 2020).

NIH's labels were mined from reports by NLP; Google had 4,376 images re-read by radiologists with
adjudication. On the 1,962 of them in the official test list (`Set Id` = test) the model is scored
twice on the same images: against the radiologists' reads and against the NLP labels, so the gap
shows how much of the error is label noise. Two findings match NIH's: Pneumothorax, and "Nodule or
mass" (model score max(p_Nodule, p_Mass), NLP label Nodule OR Mass).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxr14.errors import UserError
from cxr14.judging.bootstrap import FindingAuroc, patient_bootstrap

GOOGLE_FINDINGS = ("Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass")
GOOGLE_FILE = "google2019_nih-chest-xray-labels.csv"  # also read gzipped (.csv.gz)
#: Google's finding -> the NIH findings it covers (model score = max of their probabilities, NLP = any).
MATCHED = {"Pneumothorax": ("Pneumothorax",), "Nodule or mass": ("Nodule", "Mass")}


def read_google_labels(path: Path) -> pd.DataFrame:
    """Google's CSV as a DataFrame indexed by image name: Patient ID, Set Id, and the 4 findings as 0/1."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, EOFError) as err:
        raise UserError(f"Could not read Google's adjudicated labels {path}: {err}. Replace the file with "
                        f"{GOOGLE_FILE}(.gz) as published, or remove it to skip this comparison.") from err  # fmt: skip
    needed = ["Image Index", "Patient ID", "Set Id", *GOOGLE_FINDINGS]
    missing = [c for c in needed if c not in frame.columns]
    values = frame[[c for c in GOOGLE_FINDINGS if c in frame.columns]].astype(str).apply(lambda c: c.str.strip())
    odd = sorted(set(np.unique(values.to_numpy())) - {"YES", "NO"})
    if missing or odd:
        problem = f"lacks the column(s) {missing}" if missing else f"holds values other than YES/NO: {odd[:5]}"
        raise UserError(f"{path} {problem}; it is not Google's adjudicated label file ({GOOGLE_FILE}). "
                        "Replace it with the published file, or remove it to skip this comparison.")  # fmt: skip
    out = frame[["Image Index", "Patient ID", "Set Id"]].copy()
    for column in GOOGLE_FINDINGS:
        out[column] = (values[column] == "YES").astype(np.uint8)
    return out.set_index("Image Index")


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdjudicatedFinding:
    """One Google finding on the scored test images: AUROC against the radiologists and against NLP."""

    n_images: int
    n_patients: int
    radiologists: FindingAuroc
    nlp: FindingAuroc

    def to_json(self) -> dict[str, Any]:
        return {"n_images": self.n_images, "n_patients": self.n_patients,
                "radiologists": self.radiologists.to_json(), "nlp": self.nlp.to_json()}  # fmt: skip


@dataclass(frozen=True)
class AdjudicatedResult:
    per_finding: dict[str, AdjudicatedFinding]
    n_resamples: int
    level: float
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "bootstrap": {"unit": "patient", "n_resamples": self.n_resamples, "level": self.level, "seed": self.seed},
            "per_finding": {name: row.to_json() for name, row in self.per_finding.items()},
        }


def score_adjudicated(
    names: Any,
    probs: Any,
    nlp_targets: Any,
    label_names: Sequence[str],
    google: pd.DataFrame,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> AdjudicatedResult | None:
    """Score the images among Google's test set (`Set Id` = test); None when none of them was scored.

    `names` [N] image names, `probs` [N, K] and `nlp_targets` [N, K] in `label_names` order; patients come
    from Google's table. Both scorings use the same seed, hence the same patient resamples. Google read NIH's
    films for NIH's findings: a model without Pneumothorax, Nodule and Mass among its labels is not scored here.
    """
    if not all(n in label_names for nih in MATCHED.values() for n in nih):
        log.info("radiologists' reads: not scored, the model's labels are not NIH's (%s)", ", ".join(label_names))
        return None
    names = np.asarray(names, dtype=str)
    test = google[google["Set Id"].astype(str).str.strip() == "test"]
    rows = np.flatnonzero(np.isin(names, test.index.to_numpy(dtype=str)))
    if not rows.size:
        return None
    reads = test.loc[names[rows]]
    p, nlp = np.asarray(probs, dtype=np.float64)[rows], np.asarray(nlp_targets)[rows]
    cols = {f: [list(label_names).index(n) for n in nih] for f, nih in MATCHED.items()}
    scores = np.stack([p[:, c].max(axis=1) for c in cols.values()], axis=1)
    nlp_labels = np.stack([nlp[:, c].max(axis=1) for c in cols.values()], axis=1)
    google_labels = reads[list(MATCHED)].to_numpy()
    patients = reads["Patient ID"].to_numpy()
    found = tuple(MATCHED)
    vs_reads = patient_bootstrap(google_labels, scores, patients, n_resamples, seed, level, found)
    vs_nlp = patient_bootstrap(nlp_labels, scores, patients, n_resamples, seed, level, found)
    per_finding = {
        f: AdjudicatedFinding(len(rows), vs_reads.n_patients, vs_reads.per_class[f], vs_nlp.per_class[f]) for f in found
    }
    return AdjudicatedResult(per_finding, n_resamples, level, seed)
