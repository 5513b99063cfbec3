"""`--dataset csv`: any labelled set of chest films, described by one CSV.

Columns: `path` (the film, relative to the CSV's folder: PNG, JPEG or DICOM), optional `patient` (without it every
film is its own patient, and the split and the intervals are by image: said in the log), optional `split`
(train / val / test; else a seeded patient-wise split), optional `sex`, `age` and `view`, and one column per
label holding 1, 0, -1 or nothing (-1 and nothing: unknown). Every other column is a label; `--labels A,B,C`
picks some.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cxr14.data.datasets.base import Metadata, ReadOptions
from cxr14.data.datasets.common import demographics, header, inside, label_matrix, pick_labels, read_table
from cxr14.errors import UserError

log = logging.getLogger(__name__)
RESERVED = ("path", "patient", "split", "sex", "age", "view")
SPLITS = {"train": "train", "val": "val", "validation": "val", "valid": "val", "validate": "val", "test": "test"}


def read(data_dir: Path, opts: ReadOptions) -> Metadata:
    """The CSV's films, labels, patients, explicit split (when given) and demographics."""
    csv_path, labels, uncertain = opts.csv, opts.labels, opts.uncertain
    if csv_path is None:
        raise UserError("--dataset csv needs --csv FILE: the CSV with a `path` column and one column per label.")
    columns = header(csv_path, "the dataset CSV")
    if "path" not in columns:
        raise UserError(f"{csv_path} has no `path` column (it has: {', '.join(columns[:8])}); name the column "
                        f"that holds each film's path `path`.")  # fmt: skip
    available = [c for c in columns if c.lower() not in RESERVED and not c.startswith("Unnamed:")]
    if not available:
        raise UserError(f"{csv_path} has no label column: besides {', '.join(RESERVED)} every column is a label "
                        f"(1, 0, -1 or blank per film).")  # fmt: skip
    names = pick_labels(available, labels, csv_path)
    frame = read_table(csv_path, "the dataset CSV", labels=names)
    frame.columns = columns
    paths = inside(csv_path.parent, frame["path"].tolist(), csv_path, "path")
    by_image = "patient" not in frame.columns or (frame["patient"].str.strip() == "").all()
    if by_image:
        log.warning("%s has no patient column: every film counts as its own patient, so the split and the "
                    "intervals are by image (follow-ups of one patient may sit on both sides)", csv_path)  # fmt: skip
        patients = np.arange(len(frame))
    else:
        blank = frame["patient"].str.strip() == ""
        if blank.any():
            i = int(np.flatnonzero(blank.to_numpy())[0])
            raise UserError(f"{csv_path}, row {i + 2}, column 'patient': empty; give every film its patient (or "
                            f"leave the column out to split by image).")  # fmt: skip
        patients = np.unique(frame["patient"].str.strip().to_numpy(), return_inverse=True)[1]
    split = _split(frame, csv_path, patients) if "split" in frame.columns else None
    cols = {c.lower(): c for c in frame.columns}
    demo = demographics(*(frame[cols[k]].tolist() if k in cols else None for k in ("sex", "age", "view")),
                        n=len(frame))  # fmt: skip
    return Metadata(paths, label_matrix(frame, names, csv_path, uncertain), patients.astype(np.int64), csv_path,
                    demo, tuple(names), root=csv_path.parent, split=split, by_image=by_image)  # fmt: skip


def _split(frame, path: Path, patients: np.ndarray) -> np.ndarray:
    """The `split` column as train / val / test; a patient in two splits names both rows.

    A blank cell is a film whose split is not fixed: it follows its patient's fixed rows, else it joins the
    training films (from which validation, and test when no row names it, are carved by patient). So a user who
    marks only the test films gets exactly those as the test split."""
    cells = frame["split"].str.strip().str.lower()
    bad = ~cells.isin(SPLITS) & (cells != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path}, row {i + 2}, column 'split': {frame['split'].iloc[i]!r} is not train, val or "
                        f"test (or blank: not fixed).")  # fmt: skip
    split = cells.map(lambda c: SPLITS.get(c, "")).to_numpy(dtype=object)
    first: dict[int, int] = {}
    for i, (p, s) in enumerate(zip(patients, split, strict=True)):
        if not s:
            continue
        j = first.setdefault(int(p), i)
        if split[j] != s:
            raise UserError(
                f"{path}: patient {frame['patient'].iloc[i]!r} is in the {split[j]} split (row {j + 2}) and the {s} "
                f"split (row {i + 2}); a patient belongs to one split, or the evaluation leaks."
            )
    blank = np.flatnonzero(split == "")
    if len(blank):
        follows = [split[first[int(patients[i])]] if int(patients[i]) in first else "" for i in blank]
        split[blank] = [s or "train" for s in follows]
        log.info("%s: %d film(s) with a blank split: %d follow their patient's other films, the rest join the training "
                 "films (validation and, where no film is marked test, test are carved from them by patient)", path,
                 len(blank), sum(bool(s) for s in follows))  # fmt: skip
    return split.astype(str)
