"""Predictions made elsewhere - another toolkit's, a published model's - scored exactly as a checkpoint is.

A predictions file is a CSV with an image column (image, path, Image Index, Path, filename, file, image_id,
dicom_id or ImageID) and one probability column per finding. Its rows are matched to a split's films by name (the
split's own names, or their file names when the file holds only those and they are unique in the split), its
columns to the split's labels through the label map (`judging.mapping`, as for external validation). The result
is a split and logits, the form every scoring path takes (`evaluate.score`, `compare`), so a file is judged with
the same intervals, operating points and report as a model; it carries no thresholds (nothing was chosen on
validation), so its operating points are n/a unless the file came with them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logit

from cxr14.data.splits import Split
from cxr14.errors import UserError
from cxr14.model.ensemble import sha256_of

log = logging.getLogger(__name__)
IMAGE_COLUMNS = ("image", "path", "Image Index", "Path", "filename", "file", "image_id", "dicom_id", "ImageID")
#: Columns that are never a finding's probability (cxr14's own predictions files carry the first two).
NOT_FINDINGS = ("patient", "split", "sex", "age", "view", "Patient ID", "subject_id", "study_id")


@dataclass(frozen=True)
class PredictionsFile:
    """A predictions CSV as read: its image names (as written), its finding columns, the probabilities."""

    path: Path
    sha256: str
    image_column: str
    images: np.ndarray  # str [N]
    labels: tuple[str, ...]
    probs: np.ndarray  # float64 [N, K]

    def card(self) -> dict[str, Any]:
        """What the report's model card and metrics.json say of the "model": the file, its hash, its columns."""
        return {"model": f"predictions file {self.path.name}", "predictions": str(self.path), "sha256": self.sha256,
                "labels": list(self.labels), "image_column": self.image_column}  # fmt: skip


def read_file(path: Path) -> PredictionsFile:
    """The file's image names and probability columns, each checked: a bad cell is named by row and column."""
    try:
        frame = pd.read_csv(path, dtype=object, keep_default_na=False, sep=None, engine="python")
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UserError(f"Cannot read the predictions file {path} ({type(exc).__name__}: {exc}).") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    image = next((c for c in IMAGE_COLUMNS if c in frame.columns), None)
    if image is None:
        raise UserError(f"{path} has no image column: name the column that holds each film "
                        f"{' or '.join(IMAGE_COLUMNS[:3])} (it has: {', '.join(frame.columns[:8])}).")  # fmt: skip
    labels = tuple(c for c in frame.columns if c != image and c not in IMAGE_COLUMNS and c not in NOT_FINDINGS
                   and not c.startswith(("true_", "Unnamed:")))  # fmt: skip
    if not labels:
        raise UserError(f"{path} has no probability column besides {image!r}: one column per finding, named as the "
                        f"dataset's label (or as the label map spells it), holding probabilities 0..1.")  # fmt: skip
    images = frame[image].astype(str).str.strip().str.replace("\\", "/").to_numpy(dtype=str)
    twice = pd.Series(images).duplicated().to_numpy()
    if twice.any():
        i = int(np.flatnonzero(twice)[0])
        raise UserError(f"{path}, row {i + 2}, column {image!r}: {images[i]!r} is listed twice; one row per film.")
    probs = np.empty((len(frame), len(labels)), dtype=np.float64)
    for j, name in enumerate(labels):
        values = pd.to_numeric(frame[name].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > 1))
        if len(bad):
            i = int(bad[0])
            raise UserError(
                f"{path}, row {i + 2}, column {name!r}: {frame[name].iloc[i]!r} is not a probability. Every "
                f"finding column holds a number from 0 to 1 for every film (logits: apply the sigmoid first)."
            )
        probs[:, j] = values
    return PredictionsFile(path, sha256_of(path), image, images, labels, probs)


def rows_in_split(file: PredictionsFile, split: Split) -> np.ndarray:
    """For each of the file's rows, the split row of the same film (-1: not in the split).

    By the split's names; when none of the file's names is one, by file name (a file that lists
    `.../test/NORMAL/a.jpeg` or just `a.jpeg`), where the split's file names are unique."""
    row_of = {n: i for i, n in enumerate(split.names)}
    rows = np.array([row_of.get(n, -1) for n in file.images], dtype=np.int64)
    if (rows >= 0).any():
        return rows
    base = pd.Series([os.path.basename(n) for n in split.names])
    unique = base[~base.duplicated(keep=False)]
    by_base = dict(zip(unique.to_numpy(), unique.index, strict=True))
    return np.array([by_base.get(os.path.basename(n), -1) for n in file.images], dtype=np.int64)


def on_split(file: PredictionsFile, split: Split, intersect: bool) -> tuple[Split, np.ndarray, dict[str, Any]]:
    """(the split's films the file scores, in the split's order; their logits [N, K] in the file's columns; what
    was matched). Films of one and not the other are refused with the counts, or left out with `intersect`."""
    rows = rows_in_split(file, split)
    in_split = rows >= 0
    covered = np.zeros(len(split), dtype=bool)
    covered[rows[in_split]] = True
    extra, absent = int((~in_split).sum()), int((~covered).sum())
    if (extra or absent) and not (intersect and in_split.any()):
        example = file.images[~in_split][:3].tolist() if extra else split.names[~covered][:3].tolist()
        raise UserError(
            f"{file.path} and the {split.name} split ({len(split):,} films) are not of the same films: "
            f"{extra:,} of the file's {len(rows):,} rows are not in the split, {absent:,} of the split's films are "
            f"not in the file (e.g. {', '.join(example)}). Score the file on the split it was made for "
            f"(--dataset, --data_dir, --split), or pass --intersect to score the {int(in_split.sum()):,} films in "
            f"both (said in the output)."
        )
    if extra or absent:
        log.warning("scoring the %d films in both %s and the %s split (%d of the file's rows not in the split, %d "
                    "of the split's films not in the file)", in_split.sum(), file.path.name, split.name, extra,
                    absent)  # fmt: skip
    order = np.argsort(rows[in_split], kind="stable")
    taken = rows[in_split][order]
    with np.errstate(divide="ignore"):
        logits = logit(file.probs[in_split][order])  # 0 and 1 exactly give -inf and inf, and come back exactly
    record = {"file": str(file.path), "sha256": file.sha256, "rows": len(rows), "scored": len(taken),
              "rows_not_in_split": extra, "split_films_not_in_file": absent,
              "intersect": bool(extra or absent)}  # fmt: skip
    return split.take(taken), logits, record
