"""`--dataset vindr`: VinDr-CXR (PhysioNet 1.0.0) as distributed: DICOM films and per-image label files.

DATA_DIR holds train/<image_id>.dicom, test/<image_id>.dicom and annotations/image_labels_train.csv and
annotations/image_labels_test.csv: `image_id`, `rad_id` (training only), then one 0/1 column per finding (22 local
findings and 6 diagnoses, e.g. "Aortic enlargement", "Pleural effusion", "Nodule/Mass", "COPD", "No finding"). Each
training film was read by three radiologists: a finding is positive when any of them marked it (--readers any, the
default) or a majority did (--readers majority). The test films carry the radiologists' consensus, one row each, and
are the test split; validation is carved from training. VinDr-CXR names no patients: every film is its own patient
(so the split and the intervals are by image; said in the log). --labels picks findings (default: all).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.data.datasets.common import demographics, label_matrix, pick_labels, read_table
from cxr14.data.metadata import Metadata
from cxr14.errors import UserError

log = logging.getLogger(__name__)
FILES = {"train": "annotations/image_labels_train.csv", "test": "annotations/image_labels_test.csv"}


def read(data_dir: Path, labels: str | None, readers: str) -> Metadata:
    """Every film once, its findings combined over its readers, train and test as VinDr-CXR splits them."""
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
