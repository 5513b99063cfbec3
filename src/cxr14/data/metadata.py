"""NIH metadata: the Data_Entry CSV in every variant users have, and the official split lists.

Variants handled (see shared/nih/README.md): the 2017 file (CRLF, trailing comma -> an empty
`Unnamed: 11` column), the 2020 revision with `Patient Gender` or `Patient Sex`, with or without
trailing commas, LF or CRLF, plain or gzipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.errors import UserError
from cxr14.labels import NIH_LABELS, NO_FINDING, encode

CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
REQUIRED = ("Image Index", "Finding Labels", "Patient ID")


@dataclass(frozen=True)
class Demographics:
    """Who and how, per image, for subgroup results: sex (M/F, "" unknown), age in years (-1 unknown), view."""

    sex: np.ndarray  # str
    age: np.ndarray  # int64
    view: np.ndarray  # str: PA or AP

    def take(self, rows: np.ndarray) -> Demographics:
        return Demographics(self.sex[rows], self.age[rows], self.view[rows])


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

    def __len__(self) -> int:
        return len(self.names)


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
