"""Label sets: NIH's 14 findings (the default) and the encoding every label matrix in cxr14 uses.

A label set belongs to the data and then to the model, never to the package: a dataset reader gives its own
label names with its split, training stores them in the checkpoint, and every command follows the checkpoint's
(the head size, the loss, the metrics, predict's columns, the web page, the exports). NIH's names and order below
are what NIH's own reader and the phantoms use.

Labels are small integers per image and finding: 1 positive, 0 negative, UNKNOWN (-1) not known (CheXpert's
uncertain or unmentioned findings, a hospital's blank cells). An unknown label adds nothing to the loss, nor to
that finding's AUROC, thresholds, calibration or intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NIH_LABELS: tuple[str, ...] = (
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
NO_FINDING = "No Finding"
UNKNOWN = -1
_INDEX = {name: i for i, name in enumerate(NIH_LABELS)}


def encode(finding_labels: str) -> np.ndarray:
    """Turn one NIH `Finding Labels` cell (`A|B` or `No Finding`) into a 14-long 0/1 vector in NIH_LABELS order.

    Raises KeyError naming the unknown label, so the caller can report the row.
    """
    out = np.zeros(len(NIH_LABELS), dtype=np.int8)
    if finding_labels == NO_FINDING:
        return out
    for name in finding_labels.split("|"):
        out[_INDEX[name]] = 1
    return out


def decode(row: np.ndarray) -> str:
    """The inverse of `encode`: a 0/1 vector back to NIH's `Finding Labels` spelling."""
    names = [NIH_LABELS[i] for i in np.flatnonzero(np.asarray(row) == 1)]
    return "|".join(names) if names else NO_FINDING


def known(targets: np.ndarray) -> np.ndarray:
    """Bool mask of the labels that are known (0 or 1), as opposed to UNKNOWN."""
    return np.asarray(targets) >= 0


def check_names(names: Sequence[str], where: str) -> tuple[str, ...]:
    """A label set as a tuple of distinct, non-empty names; ValueError naming `where` otherwise."""
    out = tuple(str(n) for n in names)
    if not out or any(not n.strip() for n in out) or len(set(out)) != len(out):
        raise ValueError(f"{where}: a label set needs distinct, non-empty names, got {list(out)}")
    return out


# --- the same finding in other datasets' label sets -------------------------------------------------------------

#: Findings that mean the same thing across label sets, each as the datasets spell it (None: the set lacks it).
#: Columns: NIH, CheXpert and MIMIC-CXR (one label set), PadChest, VinDr-CXR.
SAME = (
    ("Atelectasis", "Atelectasis", "atelectasis", "Atelectasis"),
    ("Cardiomegaly", "Cardiomegaly", "cardiomegaly", "Cardiomegaly"),
    ("Effusion", "Pleural Effusion", "pleural effusion", "Pleural effusion"),
    ("Pneumothorax", "Pneumothorax", "pneumothorax", "Pneumothorax"),
    ("Consolidation", "Consolidation", "consolidation", "Consolidation"),
    ("Edema", "Edema", "pulmonary edema", "Edema"),
    ("Pneumonia", "Pneumonia", "pneumonia", "Pneumonia"),
    ("Infiltration", None, "infiltrates", "Infiltration"),
    ("Emphysema", None, "emphysema", "Emphysema"),
    ("Fibrosis", None, "pulmonary fibrosis", "Pulmonary fibrosis"),
    ("Pleural_Thickening", None, "pleural thickening", "Pleural thickening"),
    ("Mass", None, "pulmonary mass", None),  # PadChest's usual spelling: 1,039 rows; its "mass", 56
    ("Nodule", None, "nodule", None),
    ("Hernia", None, "hiatal hernia", None),
    (None, "No Finding", "normal", "No finding"),
    (None, "Lung Opacity", None, "Lung Opacity"),
    (None, "Enlarged Cardiomediastinum", None, None),
    (None, "Fracture", "fracture", None),
)
#: Findings that only roughly correspond (scored only with --approximate, and marked so): the model's findings on
#: the left (their highest probability stands for the group) against the data's on the right.
APPROXIMATE = (
    (("Mass", "Nodule"), "Lung Lesion"),  # CheXpert / MIMIC: a lesion is a mass or a nodule
    (("Mass", "Nodule"), "Nodule/Mass"),  # VinDr-CXR
    (("Infiltration",), "Lung Opacity"),
    (("Pleural_Thickening",), "Pleural Other"),
    (("Emphysema",), "COPD"),
    (("Lung Lesion",), "Mass"),
    (("Lung Lesion",), "Nodule"),
    (("Lung Lesion",), "Nodule/Mass"),
    (("Lung Opacity",), "Infiltration"),
)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", " ")


_CONCEPT = {_key(n): i for i, row in enumerate(SAME) for n in row if n}


def match(model: Sequence[str], data: Sequence[str], approximate: bool = False) -> list[tuple[str, list[int], str]]:
    """How a model's outputs score a dataset's labels: (data label, the model outputs that stand for it, "exact"
    or "approximate") for each data label that can be scored.

    Exact: the same name, or the same finding in another label set's spelling (SAME). Approximate (only when
    asked): a group of the model's findings against one of the data's (APPROXIMATE); the group's highest
    probability is the score. Data labels with neither are left out (the caller says which, and why).
    """
    model_keys = [_key(m) for m in model]
    out: list[tuple[str, list[int], str]] = []
    for label in data:
        key = _key(label)
        concept = _CONCEPT.get(key)
        same = [j for j, m in enumerate(model_keys) if m == key or (concept is not None and _CONCEPT.get(m) == concept)]
        if same:
            out.append((label, same[:1], "exact"))
            continue
        if approximate:
            for group, target in APPROXIMATE:
                if _key(target) == key:
                    cols = [j for j, m in enumerate(model_keys) if m in {_key(g) for g in group}]
                    if cols:
                        out.append((label, cols, "approximate"))
                        break
    return out
