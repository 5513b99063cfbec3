"""`--dataset vindr`: VinDr-CXR (PhysioNet 1.0.0) as distributed: DICOM films and per-image label files.

DATA_DIR holds train/<image_id>.dicom, test/<image_id>.dicom and annotations/image_labels_train.csv and
annotations/image_labels_test.csv: `image_id`, `rad_id` (training only), then one 0/1 column per finding (22 local
findings and 6 diagnoses, e.g. "Aortic enlargement", "Pleural effusion", "Nodule/Mass", "COPD", "No finding"). Each
training film was read by three radiologists: a finding is positive when any of them marked it (--readers any, the
default) or a majority did (--readers majority). The test films carry the radiologists' consensus, one row each, and
are the test split; validation is carved from training. VinDr-CXR names no patients: every film is its own patient
(so the split and the intervals are by image; said in the log). --labels picks findings (default: all).

Beside them, annotations/annotations_train.csv and annotations_test.csv hold the radiologists' boxes: `image_id`,
`rad_id`, `class_name`, `x_min`, `y_min`, `x_max`, `y_max` (the DICOM's pixels), a row per box around a local
finding, and one "No finding" row without coordinates for a reader who marked nothing. `read_boxes` reads them for
`cxr14 evaluate --bbox` (Kaggle's VinBigData train.csv has the same columns, plus class_id).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.data.datasets.base import Metadata, ReadOptions
from cxr14.data.datasets.common import demographics, label_matrix, pick_labels, read_table
from cxr14.errors import UserError

log = logging.getLogger(__name__)
FILES = {"train": "annotations/image_labels_train.csv", "test": "annotations/image_labels_test.csv"}


def read(data_dir: Path, opts: ReadOptions) -> Metadata:
    """Every film once, its findings combined over its readers, train and test as VinDr-CXR splits them."""
    labels, readers = opts.labels, opts.readers
    parts, names = [], None
    for split, file in FILES.items():
        path = data_dir / file
        frame = read_table(path, "VinDr-CXR's image labels")
        if "image_id" not in frame.columns:
            raise UserError(f"{path} has no image_id column: it is not VinDr-CXR's image_labels file.")
        frame = frame.rename(columns={"Other disease": "Other diseases"})  # the test file spells it so
        available = [c for c in frame.columns if c not in ("image_id", "rad_id")]
        names = pick_labels(available, labels, path) if names is None else names
        absent = [n for n in names if n not in frame.columns]
        if absent:
            raise UserError(f"{path} lacks the label column(s) {', '.join(absent)} that the training labels have.")
        cells = label_matrix(frame, names, path, "zeros")  # 0/1 only in VinDr; a -1 would be read as 0
        votes = pd.DataFrame(cells, columns=names).groupby(frame["image_id"].str.strip().to_numpy(), sort=False)
        marked, read_by = votes.sum(), votes.count()  # per image: readers who marked it, readers who read it
        needed = 1 if readers == "any" or split == "test" else read_by // 2 + 1  # the test rows are a consensus
        positive = (marked >= needed).to_numpy()
        ids = marked.index.to_numpy(dtype=str)
        parts.append((ids, positive.astype(np.int8), split))
    ids = np.concatenate([p[0] for p in parts])
    targets = np.concatenate([p[1] for p in parts])
    split = np.concatenate([[p[2]] * len(p[0]) for p in parts]).astype(str)
    files = np.array([f"{s}/{i}.dicom" for i, s in zip(ids, split, strict=True)], dtype=str)
    log.warning("VinDr-CXR names no patients: every film counts as its own patient (split and intervals by image)")
    demo = demographics(None, None, None, len(ids))
    return Metadata(files, targets, np.arange(len(ids), dtype=np.int64), data_dir / FILES["train"], demo,
                    tuple(names), root=data_dir, split=split, by_image=True)  # fmt: skip


BOX_FILES = {"train": "annotations/annotations_train.csv", "test": "annotations/annotations_test.csv"}
BOX_COLUMNS = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")


def box_files(data_dir: Path) -> list[Path]:
    """The box files the folder holds (either or both), or a UserError saying where they should be."""
    found = [data_dir / f for f in BOX_FILES.values() if (data_dir / f).is_file()]
    if not found:
        raise UserError(f"--bbox on VinDr-CXR needs its radiologists' boxes, {' or '.join(BOX_FILES.values())} in "
                        f"{data_dir} (PhysioNet's release has both beside the image labels).")  # fmt: skip
    return found


def read_boxes(data_dir: Path) -> pd.DataFrame:
    """Every reader's boxes -> DataFrame[image, finding, x, y, w, h, reader], the form `judging.localisation`
    scores: image named as `read` names the film (test/<image_id>.dicom), finding as the labels file spells it,
    x, y, w, h (left, top, width, height) in the DICOM's pixels.

    Each reader's box is its own row: a training film has up to three per finding (one per reader who marked it),
    a test film the consensus'. "No finding" rows (no coordinates) are no boxes and are left out; any other row
    without four numbers is a UserError naming its file, row and column.
    """
    parts = []
    for path in box_files(data_dir):
        split = next(k for k, f in BOX_FILES.items() if data_dir / f == path)
        frame = read_table(path, "VinDr-CXR's boxes")
        absent = [c for c in BOX_COLUMNS if c not in frame.columns]
        if absent:
            raise UserError(f"{path} lacks the column(s) {', '.join(absent)}: it is not VinDr-CXR's box file "
                            f"({', '.join(('image_id', 'rad_id', *BOX_COLUMNS[1:]))}).")  # fmt: skip
        corners = frame[list(BOX_COLUMNS[2:])].apply(lambda c: c.str.strip())
        boxed = (corners != "").any(axis=1).to_numpy()
        numbers = corners.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.argwhere(boxed[:, None] & ~np.isfinite(numbers))
        if len(bad):
            i, j = (int(v) for v in bad[0])
            raise UserError(f"{path}, row {i + 2}, column '{BOX_COLUMNS[2 + j]}': {corners.iat[i, j]!r} is not a "
                            f"coordinate; a box row has four numbers (x_min, y_min, x_max, y_max).")  # fmt: skip
        rows = np.flatnonzero(boxed)
        x0, y0, x1, y1 = numbers[rows].T
        readers = frame["rad_id"].str.strip() if "rad_id" in frame.columns else pd.Series([""] * len(frame))
        parts.append(pd.DataFrame({
            "image": (split + "/" + frame["image_id"].str.strip() + ".dicom").to_numpy()[rows],
            "finding": frame["class_name"].str.strip().to_numpy()[rows],
            "x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0,
            "reader": readers.to_numpy()[rows],
        }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)
