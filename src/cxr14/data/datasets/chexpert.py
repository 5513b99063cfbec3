"""`--dataset chexpert`: CheXpert v1.0 or v1.0-small as Stanford distributes it.

DATA_DIR is the dataset folder itself (CheXpert-v1.0-small/, or CheXpert-v1.0/), holding train.csv, valid.csv,
train/ and valid/. Each CSV row is one film: `Path` (e.g. CheXpert-v1.0-small/train/patient00001/study1/
view1_frontal.jpg: it starts with the dataset folder's own name, which is dropped, so a renamed folder still
works), `Sex`, `Age`, `Frontal/Lateral`, `AP/PA`, then the 14 observations with 1.0 / 0.0 / -1.0 / blank
(train.csv; valid.csv has 0 and 1 only: three radiologists' consensus). The patient is the path's patientNNNNN.
train.csv is split into train and validation by patient; valid.csv is the test split (the public test labels are
not in the download). Uncertain (-1) labels follow --uncertain (ignore, the default: unknown; zeros; ones), as
in Irvin et al. 2019; blank (unmentioned) labels are unknown, but for No Finding's, which the labeler leaves blank
wherever a finding is mentioned: negative beside a positive finding (`labeler_matrix`). Frontal films only unless
--views all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.data.datasets.base import Demographics, Metadata, ReadOptions
from cxr14.data.datasets.common import demographics, label_matrix, per_distinct, pick_labels, read_table
from cxr14.errors import UserError
from cxr14.labels import UNKNOWN

LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
          "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
          "Fracture", "Support Devices")  # fmt: skip
COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
FILES = {"train.csv": "train", "valid.csv": "test"}
#: The observations whose positive rules out No Finding (Support Devices does not: a tube is no disease).
PATHOLOGIES = tuple(k for k in LABELS if k not in ("No Finding", "Support Devices"))
#: A Path cell once the dataset folder's own name is dropped: the film relative to DATA_DIR; the group is the patient.
_FILMS = re.compile(r"^(?:train|valid)/patient(\d+)/study\d+/[^/\n]+\.(?:jpg|jpeg|png)$", re.M)


def read(data_dir: Path, opts: ReadOptions) -> Metadata:
    """Both CSVs as one table of films: train.csv rows to train (validation carved by patient), valid.csv to test."""
    labels, uncertain, views = opts.labels, opts.uncertain, opts.views
    parts, names = [], None
    for file, split in FILES.items():
        path = data_dir / file
        frame = read_table(path, "CheXpert's label file", labels=LABELS, categories=COLUMNS[1:])
        missing = [c for c in (*COLUMNS, *LABELS) if c not in frame.columns]
        if missing:
            raise UserError(f"{path} is not CheXpert's {file}: it lacks {', '.join(missing[:5])}. Pass the dataset "
                            f"folder that holds train.csv and valid.csv as Stanford ships them.")  # fmt: skip
        names = pick_labels(LABELS, labels, path)
        files, patients = _films(frame["Path"].to_numpy(dtype=object), path)
        frontal = per_distinct(frame["Frontal/Lateral"], lambda v: v.strip().lower() == "frontal").astype(bool)
        keep = np.ones(len(frame), bool) if views == "all" else frontal
        view = np.where(frontal, per_distinct(frame["AP/PA"], lambda v: v.strip().upper()), "LATERAL")
        demo = demographics(frame["Sex"], frame["Age"], view, len(frame)).take(np.flatnonzero(keep))
        parts.append((files[keep], patients[keep], np.full(int(keep.sum()), split, dtype=object),
                      labeler_matrix(frame, names, path, uncertain)[keep], demo))
    files, patients, splits, targets = (np.concatenate([part[k] for part in parts]) for k in range(4))
    demo = Demographics(*(np.concatenate([getattr(part[4], f) for part in parts]) for f in ("sex", "age", "view")))
    return Metadata(files, targets, patients, data_dir / "train.csv", demo, tuple(names), root=data_dir,
                    split=splits.astype(str))


def _films(paths: np.ndarray, source: Path) -> tuple[np.ndarray, np.ndarray]:
    """`CheXpert-v1.0-small/train/patient00001/...` -> `train/patient00001/...` (relative to DATA_DIR) and the
    patient number, every path checked.

    Done on all the paths joined by newlines: the dataset folder's name (the first path's first part, on every row
    as Stanford writes it) is dropped with one replace, and one regular-expression scan checks every path and
    takes its patient. Python per path would be most of the read on 223,414 rows. A count short of the rows
    finds the first bad one.
    """
    text = "\n".join(paths.tolist())
    first = text[: text.find("/") + 1]
    if first not in ("train/", "valid/"):
        text = ("\n" + text).replace("\n" + first, "\n")[1:]
    found = _FILMS.findall(text)
    files = text.split("\n") if len(paths) else []
    if len(found) != len(paths) or len(files) != len(paths):
        i = next((i for i, p in enumerate(paths) if "\n" in str(p)), None) if len(files) != len(paths) else None
        i = i if i is not None else next(i for i, f in enumerate(files) if not _FILMS.fullmatch(f))
        raise UserError(f"{source}, row {i + 2}, column 'Path': {paths[i]!r} is not a CheXpert film path "
                        f"(CheXpert-v1.0-small/train/patientNNNNN/studyK/viewV_frontal.jpg).")  # fmt: skip
    return np.array(files, dtype=object), np.array(found, dtype=np.int64) if found else np.empty(0, np.int64)


def labeler_matrix(frame: pd.DataFrame, names: Sequence[str], path: Path, uncertain: str) -> np.ndarray:
    """`label_matrix` of the CheXpert labeler's files (CheXpert's CSVs, MIMIC's chexpert and negbio files), with No
    Finding read as the labeler writes it.

    The labeler sets No Finding to 1.0 where no pathology is positive or uncertain and leaves it blank otherwise,
    never 0.0 (CheXpert's train.csv: 22,381 rows at 1.0, 201,033 blank). Read as written, No Finding would have no
    negative at all, and no model could learn it. So a blank No Finding beside a pathology written 1.0 is negative
    (183,519 of the real blanks); one beside nothing positive stays unknown. Uncertain cells do not count, whatever
    --uncertain says: the policy changes only the -1 cells. `frame` must hold every PATHOLOGIES column, as the
    readers require.
    """
    values = label_matrix(frame, names, path, uncertain)
    if "No Finding" in names:
        j = list(names).index("No Finding")
        ruled_out = (label_matrix(frame, PATHOLOGIES, path, "ignore") == 1).any(axis=1)
        values[(values[:, j] == UNKNOWN) & ruled_out, j] = 0
    return values
