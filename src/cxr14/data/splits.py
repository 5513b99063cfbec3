"""Patient-wise train / validation / test splits, and the check that no patient leaks across them.

The official lists split NIH by patient; validation is carved out of train_val by patient too.
An image-wise split puts follow-ups of one patient on both sides and inflates AUROC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cxr14.data.datasets.base import Demographics, Metadata, Origin
from cxr14.data.datasets.nih import read_split_list
from cxr14.errors import UserError

log = logging.getLogger(__name__)
LIST_FILES = {"train_val": "train_val_list.txt", "test": "test_list.txt"}


@dataclass(frozen=True)
class Split:
    """A set of images with their labels and patients (row i of each array is image i)."""

    name: str
    names: np.ndarray  # str [N]: each image's name (NIH: its file name; other datasets: its path in the folder)
    labels: np.ndarray  # int8 [N, K]: 1, 0 or UNKNOWN, columns in label_names order
    patients: np.ndarray  # [N]
    demographics: Demographics
    label_names: tuple[str, ...]  # the dataset's label set
    capped_from: int | None = None  # the split's size before a --max_*_samples cap, when one applied
    root: Path | None = None  # where the images are, for datasets whose names are paths (Metadata.root)
    by_image: bool = False  # the data names no patients: each image is its own (Metadata.by_image)
    origin: np.ndarray | None = None  # several datasets mixed: each image's, an index into origins
    origins: tuple[Origin, ...] = ()

    def __len__(self) -> int:
        return len(self.names)

    def take(self, rows: np.ndarray) -> Split:
        d = self.demographics.take(rows)
        origin = None if self.origin is None else self.origin[rows]
        return Split(self.name, self.names[rows], self.labels[rows], self.patients[rows], d, self.label_names,
                     self.capped_from, self.root, self.by_image, origin, self.origins)  # fmt: skip

    def rename(self, name: str) -> Split:
        return replace(self, name=name)


def whole(meta: Metadata) -> Split:
    return Split("all", meta.names, meta.labels, meta.patients, meta.demographics, meta.label_names, root=meta.root,
                 by_image=meta.by_image, origin=meta.origin, origins=meta.origins)


def select(meta: Metadata, names: list[str], split_name: str, list_path: Path) -> Split:
    """Rows of `meta` for the names in a list file; names absent from the CSV are an error."""
    row_of = {n: i for i, n in enumerate(meta.names)}
    rows = [row_of.get(n, -1) for n in names]
    absent = [n for n, r in zip(names, rows, strict=True) if r < 0]
    if absent:
        raise UserError(
            f"{list_path} names {len(absent)} image(s) that are not in {meta.source} (e.g. "
            f"{', '.join(absent[:5])}). The list and the CSV come from different releases or folders; use "
            f"the lists that came with the CSV."
        )
    return whole(meta).take(np.asarray(rows, dtype=np.int64)).rename(split_name)


def split_by_patient(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(rest, held_out): about `fraction` of the images, whole patients only, seeded."""
    patients, owner = np.unique(split.patients, return_inverse=True)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(patients)
    n_held = round(len(patients) * fraction)
    held_patient = np.zeros(len(patients), dtype=bool)
    held_patient[np.searchsorted(patients, shuffled[:n_held])] = True
    held = held_patient[owner]  # = np.isin(split.patients, shuffled[:n_held]), without a second sort
    return split.take(np.flatnonzero(~held)), split.take(np.flatnonzero(held))


def cap(split: Split, max_samples: int | None, seed: int) -> Split:
    """At most `max_samples` images, a seeded random subset kept in file order."""
    if max_samples is None or max_samples <= 0 or len(split) <= max_samples:
        return split
    rows = np.sort(np.random.default_rng(seed).choice(len(split), size=max_samples, replace=False))
    return replace(split.take(rows), capped_from=len(split))


NIH_FIX = "Use the official lists, or remove them to get a patient-wise split."


def check_disjoint(splits: dict[str, Split], fix: str = NIH_FIX) -> None:
    """Refuse to train when an image or patient sits in two splits (leakage); `fix` says what to do about it."""
    items = [(name, np.unique(split.patients)) for name, split in splits.items()]  # each split sorted once
    for i, (name_a, a) in enumerate(items):
        for name_b, b in items[i + 1 :]:
            shared = np.intersect1d(a, b, assume_unique=True)
            if len(shared):
                raise UserError(
                    f"{len(shared)} patient(s) are in both {name_a} and {name_b} (e.g. {shared[:5].tolist()}): "
                    f"the split would leak. {fix}"
                )


def describe_lists(data_dir: Path, seed: int) -> str:
    """How a data folder gets split: "official" when both NIH lists are there, else the seeded fallback."""
    if all((data_dir / f).is_file() for f in LIST_FILES.values()):
        return "official"
    return f"seeded patient-wise split (seed {seed})"


def make_splits(
    meta: Metadata, data_dir: Path, val_fraction: float, seed: int, caps: tuple[int | None, int | None]
) -> dict[str, Split]:
    """train / val / test: official lists when present, else a seeded patient-wise split.

    `caps` = (max_train_samples, max_test_samples), applied after the patient-wise carving.
    """
    list_paths = {k: data_dir / v for k, v in LIST_FILES.items()}
    if meta.split is not None:
        return _own_split(meta, val_fraction, seed, caps)
    if meta.root is None and describe_lists(data_dir, seed) == "official":
        train_val = select(meta, read_split_list(list_paths["train_val"]), "train_val", list_paths["train_val"])
        test = select(meta, read_split_list(list_paths["test"]), "test", list_paths["test"])
        log.info("split: official lists (%d train_val, %d test images)", len(train_val), len(test))
    else:
        train_val, test = split_by_patient(whole(meta), 0.2, seed)
        where = f"{' / '.join(LIST_FILES.values())} not found in {data_dir}" if meta.root is None else \
            "the dataset has no split of its own"  # fmt: skip
        log.warning(
            "split: %s; using a seeded %s split (20%% of %s to test, seed %d). Results are not comparable with an "
            "official split.", where, "image-wise" if meta.by_image else "patient-wise",
            "images" if meta.by_image else "patients", seed,
        )  # fmt: skip
    train, val = split_by_patient(train_val, val_fraction, seed)
    splits = {
        "train": cap(train, caps[0], seed).rename("train"),
        "val": val.rename("val"),
        "test": cap(test, caps[1], seed).rename("test"),
    }
    check_disjoint(splits)
    return splits


def _own_split(
    meta: Metadata, val_fraction: float, seed: int, caps: tuple[int | None, int | None]
) -> dict[str, Split]:
    """train / val / test as the dataset says; validation carved from train by patient when it names none."""
    every = whole(meta)
    part = {name: every.take(np.flatnonzero(meta.split == name)) for name in ("train", "val", "test")}
    if not len(part["test"]):
        part["train"], part["test"] = split_by_patient(part["train"], 0.2, seed)
        log.warning("split: the dataset names no test images; 20%% of its training patients go to test (seed %d)",
                    seed)  # fmt: skip
    if not len(part["val"]):
        part["train"], part["val"] = split_by_patient(part["train"], val_fraction, seed)
    log.info("split: the dataset's own (%d train, %d val, %d test images)", *(len(part[k]) for k in part))
    splits = {
        "train": cap(part["train"], caps[0], seed).rename("train"),
        "val": part["val"].rename("val"),
        "test": cap(part["test"], caps[1], seed).rename("test"),
    }
    check_disjoint(splits, f"The split comes from {meta.source}: its files come from different releases, or "
                           f"were edited; put each patient's films in one split.")  # fmt: skip
    return splits
