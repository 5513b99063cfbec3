"""`--dataset folder`: films sorted into one folder per class, the way many image sets are shared.

    DATA_DIR/CLASS/*.png|jpg|jpeg|dcm                    (no split of its own: a seeded patient-wise one)
    DATA_DIR/train|val|test/CLASS/*.png|jpg|jpeg|dcm     (the split folders are the split)

Each class folder is a label, except the all-negative class (named like normal / no finding, or --negative NAME):
its films are negative for every label. Without such a class, every class is a label. A film in class X is
positive for X and negative for every other class: the classes are taken to exclude each other, as folders do.

Patients come from the file names with --patient_pattern (a regular expression; its `patient` group, else its
first group, else the whole match; or `kermany` / `nih`, the patterns of those sets' names); without one every
film is its own patient, and the split and the intervals are by image (said in the log and the report). Ids read
inside split folders are that split's own by default (`--patient_scope split`): Kermany et al. number their
children per split, so `person100_*` in train and in test are two children. `--patient_scope dataset` says the ids
name the same person across splits (then a patient in two split folders is refused as a leak).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from cxr14.data.datasets.base import Metadata, ReadOptions
from cxr14.data.datasets.common import demographics, pick_labels
from cxr14.errors import UserError

log = logging.getLogger(__name__)
#: Split folder names (any case) -> the split.
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}  # fmt: skip
#: Class folder names (any case, `_`/`-` as spaces, a leading "0_" ordinal dropped) of the all-negative class.
NEGATIVE_NAMES = ("normal", "no finding", "nofinding", "negative", "healthy")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
PATIENT_SCOPES = ("split", "dataset")
#: --patient_pattern by name, for the sets the README names: Kermany et al.'s personN_* and IM-NNNN-* (NORMAL2-IM-NNNN
#: is numbered apart: another child, as the set's own labels.csv reads it), NIH's NNNNNNNN_NNN.png.
PATTERNS = {"kermany": r"^(?P<patient>(?:NORMAL2-)?IM-\d+|person\d+)", "nih": r"^(?P<patient>\d{8})_"}


def normalised(name: str) -> str:
    """A class folder's name as compared with NEGATIVE_NAMES: "0_Normal" -> "normal", "No_Finding" -> "no finding"."""
    return re.sub(r"^\d+[ _-]+", "", name.strip().lower()).replace("_", " ").replace("-", " ")


def is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _films(folder: Path) -> list[str]:
    """Every image file under `folder` (any depth, hidden entries skipped), as sorted POSIX paths relative to it."""
    found = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(top, folder)
        found += [name if rel == "." else f"{rel}/{name}".replace(os.sep, "/") for name in files if is_image(name)]
    return sorted(found)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def has_split_folders(data_dir: Path) -> bool:
    """Whether `data_dir` is cut into train / val / test folders (each holding class folders)."""
    return any(p.name.lower() in SPLIT_FOLDERS for p in _subfolders(data_dir))


def looks_like(data_dir: Path) -> bool:
    """A cheap guess, for naming a wrong --dataset: split folders, or two or more folders holding images."""
    if not data_dir.is_dir():
        return False
    if has_split_folders(data_dir):
        return True
    with_images = 0
    for sub in _subfolders(data_dir)[:50]:
        with os.scandir(sub) as entries:
            with_images += any(e.is_file() and is_image(e.name) for e in entries)
    return with_images >= 2


def _classes(parent: Path, rel: str) -> dict[str, list[str]]:
    """class name -> its films (paths relative to the data folder) for the class folders in `parent`."""
    out = {}
    for sub in _subfolders(parent):
        films = _films(sub)
        if films:
            out[sub.name] = [f"{rel}{sub.name}/{f}" for f in films]
        else:
            log.info("%s holds no image (%s): not a class", sub, ", ".join(IMAGE_SUFFIXES))
    loose = [e.name for e in os.scandir(parent) if e.is_file() and is_image(e.name)]
    if loose:
        log.warning("%d image(s) directly in %s belong to no class folder and are left out (e.g. %s)", len(loose),
                    parent, ", ".join(sorted(loose)[:3]))  # fmt: skip
    return out


def scan(data_dir: Path) -> tuple[dict[tuple[str, str], list[str]], bool]:
    """{(split or "", class): films} and whether the folder has split folders; a UserError when it has no class."""
    if not data_dir.is_dir():
        raise UserError(f"--data_dir {data_dir} does not exist: pass the folder that holds the class folders "
                        f"(CLASS/*.png, or train/CLASS/*.png and test/CLASS/*.png).")  # fmt: skip
    split_mode = has_split_folders(data_dir)
    found: dict[tuple[str, str], list[str]] = {}
    if split_mode:
        for sub in _subfolders(data_dir):
            split = SPLIT_FOLDERS.get(sub.name.lower())
            if split is None:
                if _films(sub):
                    raise UserError(
                        f"{data_dir} has split folders ({', '.join(sorted(SPLIT_FOLDERS))}) and also {sub.name}/ with "
                        f"images: put every class folder inside a split folder, or take the split folders apart."
                    )
                continue
            for cls, films in _classes(sub, f"{sub.name}/").items():
                found.setdefault((split, cls), []).extend(films)
    else:
        found = {("", cls): films for cls, films in _classes(data_dir, "").items()}
    if not found:
        raise UserError(
            f"{data_dir} holds no class folder with images ({', '.join(IMAGE_SUFFIXES)}): --dataset folder reads "
            f"DATA_DIR/CLASS/* or DATA_DIR/train|val|test/CLASS/*, one folder per class."
        )
    return found, split_mode


def negative_class(classes: list[str], asked: str | None, data_dir: Path) -> str | None:
    """The all-negative class: the one --negative names, else the one named like normal / no finding, else None."""
    if asked is not None:
        if asked not in classes:
            raise UserError(f"--negative {asked!r} is not a class folder of {data_dir} (its classes: "
                            f"{', '.join(classes)}).")  # fmt: skip
        return asked
    named = [c for c in classes if normalised(c) in NEGATIVE_NAMES]
    if len(named) > 1:
        raise UserError(f"{data_dir} has several classes named like 'normal' ({', '.join(named)}): say which one "
                        f"holds the films without any finding with --negative NAME.")  # fmt: skip
    return named[0] if named else None


def patient_ids(names: list[str], splits: list[str], opts: ReadOptions) -> tuple[np.ndarray, bool]:
    """(patient per film as int64, whether that is one patient per film); --patient_pattern read from file names."""
    if opts.patient_pattern is None:
        log.warning("--dataset folder without --patient_pattern: every film counts as its own patient, so the split "
                    "and the intervals are by image (one patient's films may sit on both sides)")  # fmt: skip
        return np.arange(len(names), dtype=np.int64), True
    try:
        pattern = re.compile(PATTERNS.get(opts.patient_pattern, opts.patient_pattern))
    except re.error as exc:
        raise UserError(f"--patient_pattern {opts.patient_pattern!r} is not a regular expression ({exc}).") from exc
    group = "patient" if "patient" in pattern.groupindex else (1 if pattern.groups else 0)
    ids, unmatched = [], []
    for name, split in zip(names, splits, strict=True):
        found = pattern.search(name.rsplit("/", 1)[-1])
        if found is None or not found.group(group):
            unmatched.append(name)
            continue
        scope = split if opts.patient_scope == "split" else ""
        ids.append(f"{scope}:{found.group(group)}")
    if unmatched:
        raise UserError(
            f"{len(unmatched):,} file name(s) do not match --patient_pattern {opts.patient_pattern!r} (e.g. "
            f"{', '.join(unmatched[:3])}): the pattern must find the patient in every file name (its `patient` "
            f"group, else its first group). The README gives the patterns for Kermany's and NIH's names."
        )
    return np.unique(np.asarray(ids, dtype=object), return_inverse=True)[1].astype(np.int64), False


def read(data_dir: Path, opts: ReadOptions) -> Metadata:
    """The class folders' films as a table: labels from the folders, patients from the names, the split folders'
    split (when it has them)."""
    labels = opts.labels
    if opts.patient_scope not in PATIENT_SCOPES:
        raise UserError(f"--patient_scope {opts.patient_scope!r}: choose {' or '.join(PATIENT_SCOPES)}.")
    found, split_mode = scan(data_dir)
    classes = sorted({cls for _, cls in found})
    negative = negative_class(classes, opts.negative, data_dir)
    available = [c for c in classes if c != negative]
    if not available or (negative is None and len(classes) < 2):
        raise UserError(
            f"{data_dir} has {'only the class ' + repr(classes[0]) if len(classes) == 1 else 'no class'} besides the "
            f"negative one: a classifier needs two classes (e.g. NORMAL/ and PNEUMONIA/)."
        )
    names = pick_labels(available, labels, data_dir)
    rows = [(split, cls, film) for (split, cls), films in sorted(found.items()) for film in films]
    paths = [film for _, _, film in rows]
    which = np.array([cls for _, cls, _ in rows], dtype=object)
    matrix = np.stack([(which == name) for name in names], axis=1).astype(np.int8)
    splits = [split for split, _, _ in rows]
    patients, by_image = patient_ids(paths, splits, opts)
    log.info("folder classes: %s", "; ".join(
        f"{cls} {int((which == cls).sum()):,}{' (negative for every label)' * (cls == negative)}" for cls in classes))
    return Metadata(
        np.asarray(paths, dtype=object).astype(str), matrix, patients, data_dir, demographics(None, None, None,
        len(paths)), tuple(names), root=data_dir, split=np.asarray(splits) if split_mode else None, by_image=by_image,
    )  # fmt: skip
