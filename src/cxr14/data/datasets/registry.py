"""The datasets cxr14 reads, one entry each: what the CLI offers, what detection, `prepare`, `download --check`,
`phantom --layout` and mixing iterate. Adding a dataset (RSNA Pneumonia, Open-i, ...) is one reader module in
this folder and one line below.

An entry is light (names and file patterns, no pandas): `cxr14 --help` lists the datasets without importing any
reader. The reader module is imported when a dataset is read. It provides

    read(data_dir: Path, opts: ReadOptions) -> Metadata    the table of films
    image_index(data_dir: Path) -> Mapping[str, Path]       optional: name -> file where names are not paths
    describe_missing(missing: list[str], data_dir: Path) -> str  optional: how to get films that are absent
    looks_like(data_dir: Path) -> bool                      optional: detection where no file names the layout
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from cxr14.data.datasets.base import Metadata, ReadOptions
from cxr14.errors import UserError


@dataclass(frozen=True)
class Dataset:
    """One dataset: its name (--dataset), its title, its reader module, the files that identify its folder, the
    reader options it takes and whether it is read from a folder (else --csv names every film)."""

    name: str
    title: str
    module: str
    signature: tuple[str, ...] = ()  # glob patterns: files only this dataset's folder holds
    options: tuple[str, ...] = ()  # the ReadOptions fields its reader reads
    folder: bool = True  # read from --data_dir (False: from --csv)
    holds: str = "its files as distributed"  # what its folder holds, for "no such folder" messages
    fixed_labels: bool = False  # its label set is the dataset's own and fixed (NIH): no trainability check

    def reader(self) -> ModuleType:
        return importlib.import_module(self.module)


_HERE = "cxr14.data.datasets"
DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("nih", "NIH ChestX-ray14", f"{_HERE}.nih", ("Data_Entry_2017*.csv", "Data_Entry_2017*.csv.gz"),
            ("csv",), holds="Data_Entry_2017.csv and images/ (or the Kaggle images_001..012 folders)",
            fixed_labels=True),
    Dataset("csv", "a CSV of your own", f"{_HERE}.csv_table", (), ("csv", "labels", "uncertain"), folder=False),
    Dataset("folder", "class folders", f"{_HERE}.folder", (),
            ("labels", "negative", "patient_pattern", "patient_scope"), holds="one folder per class"),
    Dataset("chexpert", "CheXpert", f"{_HERE}.chexpert", ("valid.csv",),
            ("labels", "uncertain", "views"), holds="train.csv and valid.csv as Stanford ships them"),
    Dataset("mimic", "MIMIC-CXR-JPG", f"{_HERE}.mimic", ("mimic-cxr-*-metadata.csv", "mimic-cxr-*-metadata.csv.gz"),
            ("labels", "uncertain", "views", "labeler")),
    Dataset("padchest", "PadChest", f"{_HERE}.padchest",
            ("PADCHEST_chest_x_ray_images_labels_*.csv", "PADCHEST_chest_x_ray_images_labels_*.csv.gz"),
            ("labels", "views")),
    Dataset("vindr", "VinDr-CXR", f"{_HERE}.vindr", ("annotations/image_labels_train.csv",), ("labels", "readers")),
)}  # fmt: skip
NAMES = tuple(DATASETS)


def get(name: str) -> Dataset:
    """The entry for a --dataset name; UserError listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"Unknown dataset {name!r}: cxr14 reads {', '.join(NAMES)} (several at once: "
                        f"--dataset nih,chexpert with --data_dir A,B, or --mix FILE).") from None  # fmt: skip


def detect(data_dir: Path) -> list[str]:
    """The datasets whose identifying files `data_dir` holds (usually one, or none)."""
    if not data_dir.is_dir():
        return []
    return [d.name for d in DATASETS.values() if any(any(data_dir.glob(p)) for p in d.signature)]


def check_layout(dataset: Dataset, data_dir: Path) -> None:
    """UserError when the folder holds another dataset's files and not the asked one's, naming the right one, so
    that a wrong --dataset is not reported as missing columns."""
    if not dataset.folder:
        return
    found = detect(data_dir)
    if found and dataset.name not in found:
        other = DATASETS[found[0]]
        raise UserError(f"{data_dir} looks like {other.title}'s layout, not {dataset.title}'s: pass --dataset "
                        f"{other.name} (or the folder that holds the {dataset.name} files).")  # fmt: skip
    if not found and not dataset.signature:
        return
    if not found:
        for other in DATASETS.values():
            looks_like = getattr(other.reader(), "looks_like", None) if other.folder and not other.signature else None
            if looks_like is not None and looks_like(data_dir):
                raise UserError(f"{data_dir} holds {other.title} (or train/val/test folders of them), not "
                                f"{dataset.title}'s files: pass --dataset {other.name}.")  # fmt: skip


def read(name: str, data_dir: Path, opts: ReadOptions) -> Metadata:
    """One dataset's table of films: its folder checked, its layout confirmed, its reader run."""
    dataset = get(name)
    if dataset.folder and not data_dir.is_dir():
        raise UserError(f"Data folder {data_dir} does not exist. Pass --data_dir pointing at the folder that holds "
                        f"{dataset.holds}; `cxr14 phantom --layout {name} --out DIR` makes a small synthetic one "
                        f"to try things with.")  # fmt: skip
    check_layout(dataset, data_dir)  # a folder of another layout is named before it is misread
    return dataset.reader().read(data_dir, opts)
