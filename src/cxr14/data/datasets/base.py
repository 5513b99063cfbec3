"""What every dataset reader gives: a `Metadata` table of films (names, labels with their mask, patients,
demographics, the dataset's own split) that the patient-wise splits, the cache and the loaders take from there."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Demographics:
    """Who and how, per image, for subgroup results: sex (M/F, "" unknown), age in years (-1 unknown), view."""

    sex: np.ndarray  # str
    age: np.ndarray  # int64
    view: np.ndarray  # str: PA or AP

    def take(self, rows: np.ndarray) -> Demographics:
        return Demographics(self.sex[rows], self.age[rows], self.view[rows])


@dataclass(frozen=True)
class Origin:
    """One of several datasets mixed into one table: its name in the mix, its reader, its folder, where its files are
    (Metadata.root) and its share of the training batches (None: its size)."""

    name: str
    dataset: str
    data_dir: Path
    root: Path | None
    weight: float | None = None


@dataclass(frozen=True)
class Metadata:
    """One row per image: file name, labels (int8), patient id and demographics, in CSV order."""

    names: np.ndarray  # str, e.g. "00000001_000.png"
    labels: np.ndarray  # int8 [N, K]: 1, 0 or UNKNOWN
    patients: np.ndarray  # int64
    source: Path
    demographics: Demographics
    label_names: tuple[str, ...]
    #: Where the images are: `root / name` for the datasets whose names are paths; None for NIH, whose file
    #: names are found in images/ or Kaggle's images_NNN/images/ (`images.index_images`).
    root: Path | None = None
    #: The dataset's own split per image ("train", "val" or "test"), where it has one.
    split: np.ndarray | None = None
    #: True when the data names no patients: every image is its own patient (said in the log and the report).
    by_image: bool = False
    #: Several datasets read as one (`mix.merge_tables`): each row's dataset, an index into `origins`.
    origin: np.ndarray | None = None
    origins: tuple[Origin, ...] = ()

    def __len__(self) -> int:
        return len(self.names)



@dataclass(frozen=True)
class ReadOptions:
    """Every option a dataset reader may take. Each reader reads only those its registry entry names (the others
    keep these defaults), so a command's config can carry them all and a mix file can set them per source."""

    csv: Path | None = None  # nih: the metadata CSV if not in the folder; csv: the dataset's CSV
    labels: str | None = None  # comma-separated: the labels to read (default: all the dataset has)
    uncertain: str = "ignore"  # uncertain (-1) labels: ignore, zeros or ones
    views: str = "frontal"  # frontal films only, or all
    readers: str = "any"  # vindr: any or a majority of the three readers
    labeler: str = "chexpert"  # mimic: the chexpert or the negbio labels
    negative: str | None = None  # folder: the all-negative class
    patient_pattern: str | None = None  # folder: the patient in each file name
    patient_scope: str = "split"  # folder: patient ids per split folder or across the dataset

    @classmethod
    def of(cls, config: Any, **overrides: Any) -> ReadOptions:
        """The reader options a command's config carries (one it lacks, or leaves None, keeps its default)."""
        carried = {f.name for f in fields(config)}
        values = {f.name: getattr(config, f.name) for f in fields(cls) if f.name in carried}
        return replace(cls(**{k: v for k, v in values.items() if v is not None}), **overrides)
