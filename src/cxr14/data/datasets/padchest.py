"""`--dataset padchest`: PadChest (BIMCV) as distributed: its labels CSV and its 16-bit PNGs.

DATA_DIR holds PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv (plain or gzipped; any file matching
PADCHEST_chest_x_ray_images_labels_*.csv) and the images, either in the numbered folders of the download
(DATA_DIR/<ImageDir>/<ImageID>) or all in one folder (DATA_DIR/<ImageID>). Per row: `ImageID`, `ImageDir`,
`PatientID`, `PatientSex_DICOM`, `PatientBirth`, `StudyDate_DICOM`, `Projection` (PA, AP, AP_horizontal, L,
COSTAL, ...) and `Labels`, a list of findings written as a Python list ("['pleural effusion', 'cardiomegaly']").
PadChest has 174 findings: choose the ones to train on with --labels (a film is positive for a finding in its
list and negative otherwise). A row whose Labels cell names no finding (empty, nan, or ['']) is left out and
counted: its findings are unknown; one that is not a list is an error naming its row. Frontal films (PA, AP,
AP_horizontal) only unless --views all. No official split: a seeded patient-wise one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.data.datasets.base import Metadata, ReadOptions
from cxr14.data.datasets.common import demographics, per_distinct, read_table
from cxr14.errors import UserError

log = logging.getLogger(__name__)
PATTERN = "PADCHEST_chest_x_ray_images_labels_*.csv*"
COLUMNS = ("ImageID", "ImageDir", "PatientID", "Projection", "Labels")
FRONTAL = ("PA", "AP", "AP_HORIZONTAL")


def find(data_dir: Path) -> Path:
    found = sorted(data_dir.glob(PATTERN))
    if not found:
        raise UserError(f"No {PATTERN} in {data_dir}: pass the PadChest folder that holds its labels CSV.")
    return found[0]


_ITEM = r"""\s*(?:'[^']*'|"[^"]*")\s*"""
_LIST = re.compile(rf"\[(?:{_ITEM}(?:,{_ITEM})*)?\]")
_TEXT = re.compile(r"'([^']*)'" + r'|"([^"]*)"')


def parse_labels(cell: str) -> list[str] | None:
    """The findings of one `Labels` cell, None where the cell lists none; ValueError for a cell that is not a list.

    PadChest writes each cell as a Python list of strings ("['pleural effusion', ' cardiomegaly']"); this reads
    exactly that form (a regular expression: ast.literal_eval is slower and accepts far more), strips each finding
    and lower-cases it, and drops empty ones ("['cardiomegaly', '', 'unchanged']": 2,264 real rows). A cell that
    names no finding - empty, "nan" (103 real rows), "['']" (777 rows, all labelled by BIMCV's RNN) - says nothing
    about any finding: None, unknown, never "negative for everything" ('normal' is how PadChest says that).
    """
    text = cell.strip()
    if not text or text.lower() == "nan":
        return None
    if not _LIST.fullmatch(text):
        raise ValueError(cell)
    found = [" ".join((a or b).split()).lower() for a, b in _TEXT.findall(text) if (a or b).strip()]
    return found or None


def read(data_dir: Path, opts: ReadOptions) -> Metadata:
    """The films with their chosen findings (positive when listed), patients, view, sex and age.

    Each distinct Labels cell is parsed once and each distinct finding set matched once: 160,861 rows hold far
    fewer distinct lists, and Python per row would be most of the read.
    """
    labels, views = opts.labels, opts.views
    path = find(data_dir)
    frame = read_table(path, "PadChest's labels")
    absent = [c for c in COLUMNS if c not in frame.columns]
    if absent:
        raise UserError(f"{path} lacks the column(s) {', '.join(absent)}: it is not PadChest's labels CSV.")
    if labels is None:
        raise UserError(
            f"PadChest has 174 findings: choose the ones to train on with --labels, e.g. --labels "
            f"'cardiomegaly,pleural effusion,pneumonia' (spelled as in its Labels column, {path.name})."
        )
    names = [" ".join(n.split()).lower() for n in labels.split(",") if n.strip()]
    codes, cells = pd.factorize(frame["Labels"], use_na_sentinel=False)
    found = []
    for k, cell in enumerate(cells):
        try:
            found.append(parse_labels(str(cell)))
        except ValueError:
            i = int(np.flatnonzero(codes == k)[0])
            raise UserError(f"{path}, row {i + 2}, column 'Labels': {str(cell)[:60]!r} is not a list of findings "
                            f"(PadChest writes them as ['finding', 'other finding']).") from None  # fmt: skip
    empty = np.array([f is None for f in found], dtype=bool)[codes]
    projection = per_distinct(frame["Projection"], lambda v: v.strip().upper())
    keep = ~empty & (np.ones(len(frame), bool) if views == "all" else np.isin(projection, FRONTAL))
    if empty.any():
        log.warning("%s: %d row(s) whose Labels cell names no finding left out", path, int(empty.sum()))
    seen = {name for f in found if f for name in f}
    missing = [n for n in names if n not in seen]
    if missing:
        raise UserError(f"--labels: {', '.join(missing)} never occur in {path}'s Labels (e.g. "
                        f"{', '.join(sorted(seen)[:8])}).")  # fmt: skip
    per_cell = np.array([[n in f for n in names] if f else [False] * len(names) for f in found], dtype=np.int8)
    rows = np.flatnonzero(keep)
    targets = per_cell.reshape(len(found), len(names))[codes[rows]]
    frame = frame.iloc[rows].reset_index(drop=True)
    nested = (data_dir / str(frame["ImageDir"].iloc[0]).strip()).is_dir() if len(frame) else False
    image = frame["ImageID"].str.strip()
    files = (frame["ImageDir"].str.strip() + "/" + image) if nested else image
    patients = pd.factorize(frame["PatientID"].str.strip())[0].astype(np.int64)
    blank = pd.Series([""] * len(frame))
    year = pd.to_numeric(frame.get("StudyDate_DICOM", blank).str[:4], errors="coerce")
    birth = pd.to_numeric(frame.get("PatientBirth", blank), errors="coerce")
    sex = frame["PatientSex_DICOM"].to_numpy() if "PatientSex_DICOM" in frame.columns else None
    view = np.where(projection[rows] == "L", "LATERAL", projection[rows])
    demo = demographics(sex, (year - birth).to_numpy(), view, len(frame))
    return Metadata(files.to_numpy(dtype=object), targets, patients, path, demo, tuple(names), root=data_dir)

