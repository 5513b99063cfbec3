"""NIH ChestX-ray14's reader: the Data_Entry CSV in every variant users have, the official split lists, and where
its images are (NIH's `images/` or Kaggle's `images_NNN/images/`).

Variants handled (see shared/nih/README.md): the 2017 file (CRLF, trailing comma -> an empty
`Unnamed: 11` column), the 2020 revision with `Patient Gender` or `Patient Sex`, with or without
trailing commas, LF or CRLF, plain or gzipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.data.datasets.base import Demographics, Metadata, ReadOptions
from cxr14.errors import UserError
from cxr14.labels import NIH_LABELS, NO_FINDING, encode

CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
REQUIRED = ("Image Index", "Finding Labels", "Patient ID")


def find_in(data_dir: Path, name: str) -> Path | None:
    """`data_dir/name`, or its gzipped copy `name.gz`, whichever exists (NIH files come both ways)."""
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_csv(data_dir: Path) -> Path:
    """The metadata CSV in `data_dir` (the 2020 revision preferred; `.gz` accepted)."""
    for name in CSV_NAMES:
        found = find_in(data_dir, name)
        if found is not None:
            return found
    raise UserError(
        f"No metadata CSV in {data_dir}: expected one of {', '.join(CSV_NAMES)} (as downloaded from NIH or "
        f"Kaggle), or pass its path with --csv."
    )


def read_data_entry(path: Path) -> Metadata:
    """Parse a Data_Entry CSV; unknown labels and foreign CSVs get a clear UserError."""
    try:
        frame = pd.read_csv(path, dtype={"Image Index": str, "Finding Labels": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"Cannot read metadata CSV {path}: {exc}") from exc
    frame = frame.loc[:, ~frame.columns.str.startswith("Unnamed:")]
    frame = frame.rename(columns={"Patient Sex": "Patient Gender"})
    absent = [c for c in REQUIRED if c not in frame.columns]
    if absent:
        raise UserError(
            f"{path} is not a ChestX-ray14 Data_Entry CSV: it lacks the column(s) {', '.join(absent)} "
            f"(it has: {', '.join(map(str, frame.columns[:8]))}). Use Data_Entry_2017.csv or "
            f"Data_Entry_2017_v2020.csv (not BBox_List_2017.csv)."
        )
    if frame["Image Index"].duplicated().any():
        dup = frame.loc[frame["Image Index"].duplicated(), "Image Index"].iloc[0]
        raise UserError(f"{path} lists image {dup} more than once; the file is damaged.")
    labels = _encode_all(frame["Finding Labels"].fillna("").to_numpy(), path)
    return Metadata(
        names=frame["Image Index"].to_numpy(dtype=str),
        labels=labels,
        patients=frame["Patient ID"].to_numpy(dtype=np.int64),
        source=path,
        demographics=_demographics(frame),
        label_names=NIH_LABELS,
    )


def _demographics(frame: pd.DataFrame) -> Demographics:
    """Sex, age and view columns where the CSV has them (a missing column reads as unknown)."""
    n = len(frame)

    def text(column: str) -> np.ndarray:
        if column not in frame.columns:
            return np.full(n, "", dtype=object).astype(str)
        return frame[column].fillna("").astype(str).str.strip().str.upper().to_numpy(dtype=str)

    age = pd.to_numeric(frame.get("Patient Age", pd.Series([None] * n)), errors="coerce").fillna(-1)
    return Demographics(sex=text("Patient Gender"), age=age.to_numpy(dtype=np.int64), view=text("View Position"))


def _encode_all(cells: np.ndarray, path: Path) -> np.ndarray:
    """Encode every `Finding Labels` cell; an unknown spelling names its row and the valid ones."""
    cache: dict[str, np.ndarray] = {}  # ~800 distinct strings in 112k rows
    out = np.zeros((len(cells), len(NIH_LABELS)), dtype=np.int8)
    for i, cell in enumerate(cells):
        row = cache.get(cell)
        if row is None:
            try:
                row = cache[cell] = encode(cell)
            except KeyError as exc:
                raise UserError(
                    f"{path}, data row {i + 1}: unknown finding {exc.args[0]!r} in {cell!r}. Known findings: "
                    f"{', '.join(NIH_LABELS)}, or exactly '{NO_FINDING}'."
                ) from exc
        out[i] = row
    return out


def read_split_list(path: Path) -> list[str]:
    """Image names in an official list file (LF, no final newline; blank lines ignored)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# --- where NIH's images are ----------------------------------------------------------------------------------


def image_dirs(data_dir: Path) -> list[Path]:
    """The folders that hold images, for both layouts users have.

    NIH Box tarballs unpack to `images/`; Kaggle has `images_001/images/` .. `images_012/images/`.
    """
    dirs = []
    if (data_dir / "images").is_dir():
        dirs.append(data_dir / "images")
    dirs += sorted(p for p in data_dir.glob("images_*/images") if p.is_dir())
    return dirs


def index_images(data_dir: Path) -> dict[str, Path]:
    """Map file name -> path for every PNG under the known layouts (one scandir per folder)."""
    found: dict[str, Path] = {}
    for folder in image_dirs(data_dir):
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.endswith(".png"):
                    found.setdefault(entry.name, Path(entry.path))
    return found


def image_index(data_dir: Path) -> dict[str, Path]:
    """The registry's hook: NIH's films are found by file name in its image folders (`index_images`)."""
    return index_images(data_dir)


def describe_missing(missing: list[str], data_dir: Path, shown: int = 5) -> str:
    """One paragraph for a UserError about images named in the CSV but absent on disk."""
    first = ", ".join(missing[:shown])
    return (
        f"{len(missing)} image(s) named in the metadata are not under {data_dir} "
        f"(looked in images/ and images_*/images/), e.g. {first}. `cxr14 download --data_dir {data_dir}` "
        f"fetches and unpacks the archives that hold them (it resumes, and skips what is there), and "
        f"`cxr14 download --check --data_dir {data_dir}` reports what the folder lacks; or pass "
        f"--on_bad_image skip to go on with the images that are present (the missing ones are counted)."
    )


def check_data_dir(data_dir: Path) -> None:
    """Fail early, with a paragraph, when the data folder itself is missing."""
    if not data_dir.is_dir():
        raise UserError(
            f"Data folder {data_dir} does not exist. Pass --data_dir pointing at the folder that holds "
            f"Data_Entry_2017.csv and images/ (or the Kaggle images_001..012 folders); `cxr14 phantom --out "
            f"DIR` makes a small synthetic one to try things with."
        )


def read(data_dir: Path, opts: ReadOptions) -> Metadata:
    """NIH's table of films: --csv, else the Data_Entry CSV in the folder (the 2020 revision preferred)."""
    return read_data_entry(opts.csv or find_csv(data_dir))
