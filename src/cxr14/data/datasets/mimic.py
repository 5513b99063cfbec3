"""`--dataset mimic`: MIMIC-CXR-JPG 2.x as PhysioNet distributes it.

DATA_DIR holds files/pXX/pNNNNNNNN/sNNNNNNNN/DICOM_ID.jpg (pXX: the first two digits of the subject id) and the
metadata, plain or gzipped: mimic-cxr-2.0.0-metadata.csv (one row per image: dicom_id, subject_id, study_id,
ViewPosition, ...), mimic-cxr-2.0.0-split.csv (dicom_id, study_id, subject_id, split: train / validate / test,
the official split, kept), and the labels of each *study*: mimic-cxr-2.0.0-chexpert.csv (the default) or, with
--labeler negbio, mimic-cxr-2.0.0-negbio.csv (subject_id, study_id, 14 labels: 1.0 / 0.0 / -1.0 / blank). Labels
are joined to each image of the study; a study without a label row gets unknown labels. The 2.0.0 names hold in
2.1.0 too. Frontal films (ViewPosition PA or AP) only unless --views all; uncertain labels follow --uncertain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.data.datasets.base import Metadata, ReadOptions
from cxr14.data.datasets.chexpert import LABELS, labeler_matrix
from cxr14.data.datasets.common import demographics, per_distinct, pick_labels, read_table
from cxr14.errors import UserError
from cxr14.labels import UNKNOWN

SPLITS = {"train": "train", "validate": "val", "test": "test"}
FRONTAL = ("PA", "AP")


def find(data_dir: Path, kind: str) -> Path:
    """mimic-cxr-<version>-<kind>.csv(.gz) in DATA_DIR."""
    found = sorted(data_dir.glob(f"mimic-cxr-*-{kind}.csv.gz")) + sorted(data_dir.glob(f"mimic-cxr-*-{kind}.csv"))
    if not found:
        raise UserError(f"No mimic-cxr-*-{kind}.csv(.gz) in {data_dir}: pass the MIMIC-CXR-JPG folder that holds "
                        f"files/ and the metadata, split and label files as PhysioNet ships them.")  # fmt: skip
    return found[0]


def read(data_dir: Path, opts: ReadOptions) -> Metadata:
    """Every image of the metadata with its view, its official split and its study's labels.

    The three tables are joined on their integer ids with pandas indexes (377,110 images, 227,835 studies: a
    Python dictionary per row would be most of the read).
    """
    labels, uncertain, views, labeler = opts.labels, opts.uncertain, opts.views, opts.labeler
    meta_path, split_path, label_path = find(data_dir, "metadata"), find(data_dir, "split"), find(data_dir, labeler)
    ids = ("subject_id", "study_id")
    meta = read_table(meta_path, "MIMIC-CXR's metadata", ints=ids)
    split = read_table(split_path, "MIMIC-CXR's split")
    studies = read_table(label_path, f"MIMIC-CXR's {labeler} labels", labels=LABELS, ints=ids)
    for path, frame, needed in ((meta_path, meta, ("dicom_id", *ids, "ViewPosition")),
                                (split_path, split, ("dicom_id", "split")), (label_path, studies, (*ids, *LABELS))):
        absent = [c for c in needed if c not in frame.columns]
        if absent:
            raise UserError(f"{path} lacks the column(s) {', '.join(absent)}: it is not MIMIC-CXR-JPG's file.")
    names = pick_labels(LABELS, labels, label_path)
    study_labels = labeler_matrix(studies, names, label_path, uncertain)  # No Finding as the labeler means it
    view = per_distinct(meta["ViewPosition"], lambda v: v.strip().upper())
    keep = np.ones(len(meta), bool) if views == "all" else np.isin(view, FRONTAL)
    meta, view = meta[keep].reset_index(drop=True), view[keep]
    study_index = pd.Index(studies["study_id"])
    if not study_index.is_unique:
        twice = study_index[study_index.duplicated()][0]
        raise UserError(f"{label_path}: study {twice} has two label rows; use the file as PhysioNet ships it.")
    rows = study_index.get_indexer(meta["study_id"])
    targets = np.where(rows[:, None] >= 0, study_labels[np.maximum(rows, 0)], UNKNOWN).astype(np.int8)
    split_index = pd.Index(split["dicom_id"])
    if not split_index.is_unique:
        raise UserError(f"{split_path} lists image {split_index[split_index.duplicated()][0]} twice; use the file as "
                        f"PhysioNet ships it.")  # fmt: skip
    at = split_index.get_indexer(meta["dicom_id"])
    official = np.where(at >= 0, per_distinct(split["split"], lambda v: SPLITS.get(v.strip(), "?"))[at], "")
    if (official == "").any() or (official == "?").any():
        i = int(np.flatnonzero((official == "") | (official == "?"))[0])
        why = "has no split" if official[i] == "" else f"has the split {split['split'].iloc[at[i]]!r}"
        raise UserError(f"{split_path}: image {meta['dicom_id'].iloc[i]} of {meta_path} {why} (train, validate or "
                        f"test are MIMIC's); the files come from different releases.")  # fmt: skip
    subject = meta["subject_id"].to_numpy()
    files = [f"files/p{str(s)[:2]}/p{s}/s{t}/{d}.jpg" for s, t, d in
             zip(subject.tolist(), meta["study_id"].tolist(), meta["dicom_id"].tolist(), strict=True)]  # fmt: skip
    demo = demographics(None, None, view, len(meta))
    return Metadata(np.array(files, dtype=object), targets, subject.astype(np.int64), meta_path, demo,
                    tuple(names), root=data_dir, split=official.astype(str))  # fmt: skip
