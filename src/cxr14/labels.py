"""The 14 ChestX-ray14 findings: exact spellings and order, in one place.

Every tensor of targets or logits in this package has its columns in this order, and every
checkpoint stores it, so that a model trained here can be read without guessing.
"""

from __future__ import annotations

import numpy as np

LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NUM_CLASSES = len(LABELS)
NO_FINDING = "No Finding"
_INDEX = {name: i for i, name in enumerate(LABELS)}


def encode(finding_labels: str) -> np.ndarray:
    """Turn one `Finding Labels` cell (`A|B` or `No Finding`) into a 14-long 0/1 vector.

    Raises KeyError naming the unknown label, so the caller can report the row.
    """
    out = np.zeros(NUM_CLASSES, dtype=np.uint8)
    if finding_labels == NO_FINDING:
        return out
    for name in finding_labels.split("|"):
        out[_INDEX[name]] = 1
    return out


def decode(row: np.ndarray) -> str:
    """The inverse of `encode`: a 0/1 vector back to NIH's `Finding Labels` spelling."""
    names = [LABELS[i] for i in np.flatnonzero(row)]
    return "|".join(names) if names else NO_FINDING
