"""What every dataset reader shares: label cells read strictly, uncertain labels by policy, paths kept inside
their folder, demographics in one form, and the checks that name the file, row and column of a bad value."""

from __future__ import annotations

import gzip
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.data.datasets.base import Demographics
from cxr14.errors import UserError
from cxr14.labels import UNKNOWN

#: Label cells as the readers accept them: positive, negative, uncertain (a CheXpert -1), blank.
POSITIVE, NEGATIVE, UNCERTAIN = ("1", "1.0"), ("0", "0.0"), ("-1", "-1.0")
#: What an uncertain (-1) label becomes (Irvin et al. 2019): unknown (U-Ignore), negative (U-Zeros), positive.
UNCERTAIN_POLICIES = {"ignore": UNKNOWN, "zeros": 0, "ones": 1}


def read_table(path: Path, what: str, labels: Sequence[str] = (), ints: Sequence[str] = (),
               categories: Sequence[str] = ()) -> pd.DataFrame:  # fmt: skip
    """A CSV (plain or .gz): `labels` columns as float32 (blank: NaN), `ints` as int64, `categories` (columns of
    a few distinct values: sex, view) as pandas categoricals, parsed straight into codes, the rest as text.

    Label cells are parsed by pandas' C reader as numbers, the fast way to read millions of them; a cell that is
    not a number makes that fail, and the table is read again as text so that `label_matrix` names its row and
    column. Blanks are "" in text columns. Anything unreadable is a UserError naming the file.
    """
    if not path.is_file():
        raise UserError(f"{what}: {path} does not exist.")
    numeric = {**dict.fromkeys(labels, "float32"), **dict.fromkeys(ints, "int64")}
    typed = {**dict.fromkeys(categories, "category"), **numeric}
    try:
        sep = separator(path)
        try:
            return pd.read_csv(path, sep=sep, dtype=defaultdict(lambda: object, typed), keep_default_na=False,
                               na_values={c: [""] for c in labels})  # fmt: skip
        except ValueError:
            if not numeric:
                raise
            return pd.read_csv(path, sep=sep, dtype=object, keep_default_na=False, na_values=[])  # the culprit's row
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UserError(f"Cannot read {what} {path} ({type(exc).__name__}: {exc}).") from exc


def separator(path: Path) -> str:
    """"," or ";" (what spreadsheet programs write where the comma is the decimal mark), from the header line."""
    try:
        with (gzip.open(path, "rt", errors="replace") if path.suffix == ".gz" else open(path, errors="replace")) as f:
            line = f.readline()
    except (OSError, EOFError):
        return ","  # the reader says what is wrong with the file
    return ";" if line.count(";") > line.count(",") else ","


def header(path: Path, what: str) -> list[str]:
    """A CSV's column names (stripped), read alone: the readers choose their number columns from it."""
    return [str(c).strip() for c in _read_header(path, what)]


def _read_header(path: Path, what: str) -> pd.Index:
    if not path.is_file():
        raise UserError(f"{what}: {path} does not exist.")
    try:
        return pd.read_csv(path, sep=separator(path), nrows=0).columns
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UserError(f"Cannot read {what} {path} ({type(exc).__name__}: {exc}).") from exc


#: Every accepted text label cell -> its value before the uncertain policy (2 stands for "uncertain").
_CELLS = {"": UNKNOWN, **dict.fromkeys(POSITIVE, 1), **dict.fromkeys(NEGATIVE, 0), **dict.fromkeys(UNCERTAIN, 2)}
_NUMBERS = {1.0: 1, 0.0: 0, -1.0: 2}  # -1 is uncertain: 2 until the policy decides


def label_matrix(frame: pd.DataFrame, columns: Sequence[str], path: Path, uncertain: str, row_offset: int = 2
                 ) -> np.ndarray:  # fmt: skip
    """int8 [N, K] from label cells 1 / 0 / -1 / blank (1.0, 0.0, -1.0 too): -1 by `uncertain`, blank unknown.

    Any other value is a UserError naming the file, the row (as a spreadsheet counts it: header = row 1) and the
    column, so a typo is found, not silently read as unknown. Columns `read_table` parsed as numbers are mapped
    with array operations; text ones (a table that held a non-number) spelling by distinct spelling.
    """
    if not columns:
        return np.zeros((len(frame), 0), dtype=np.int8)
    if all(pd.api.types.is_float_dtype(frame[c].dtype) for c in columns):
        # Stacked column by column: the frame keeps its columns apart, and its own to_numpy interleaves slowly.
        shown = np.column_stack([frame[c].to_numpy(dtype=np.float32) for c in columns])
        values = np.full(shown.shape, 9, dtype=np.int8)
        values[np.isnan(shown)] = UNKNOWN
        for number, value in _NUMBERS.items():
            values[shown == number] = value
    else:
        shown = frame[list(columns)].to_numpy(dtype=object)
        codes, distinct = pd.factorize(shown.ravel())  # a handful of distinct spellings in millions of cells
        lookup = np.array([_CELLS.get(str(v), _CELLS.get(str(v).strip(), 9)) for v in distinct], dtype=np.int8)
        values = lookup[codes].reshape(shown.shape)
    bad = np.argwhere(values == 9)
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise UserError(
            f"{path}, row {i + row_offset}, column '{columns[j]}': {_cell(shown[i, j])!r} is not a label. "
            f"Label cells hold 1 (positive), 0 (negative), -1 (uncertain) or nothing (unknown)."
        )
    values[values == 2] = UNCERTAIN_POLICIES[uncertain]
    return values


def _cell(value: object) -> str:
    """A label cell as the user wrote it, near enough: 2.0 read as a number shows as '2'."""
    return f"{value:g}" if isinstance(value, float | np.floating) else str(value)


def per_distinct(values: pd.Series | np.ndarray | Sequence[object], fn: Callable[[str], object]) -> np.ndarray:
    """`fn` of each value as an object array, computed once per distinct value: a column of 300,000 cells holds
    a handful of sexes, views or label lists, and Python per cell is what a user would wait for."""
    if not isinstance(values, pd.Series | np.ndarray):
        values = np.asarray(values, dtype=object)
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    mapped = np.empty(len(distinct), dtype=object)
    mapped[:] = [fn("" if v is None or v != v else str(v)) for v in distinct]
    return mapped[codes]


def inside(root: Path, relative: Sequence[str], path: Path, column: str) -> np.ndarray:
    """The image paths, checked: none leaves `root` (no '..', no absolute path elsewhere), none twice.

    A lexical check (normpath): a symbolic link inside the folder that points to storage elsewhere is the user's
    choice and stays allowed; an absolute path inside `root` is made relative to it.
    """
    base = os.path.normpath(os.path.abspath(root))
    names = np.array([str(p).strip() for p in relative], dtype=object)
    for i, name in enumerate(names):
        full = os.path.normpath(os.path.join(base, name))
        if not name or not full.startswith(base + os.sep):
            raise UserError(
                f"{path}, row {i + 2}, column '{column}': {name!r} is not a file inside {root}. Image paths are "
                f"relative to the folder of the CSV and may not leave it ('..', or an absolute path elsewhere)."
            )
        if os.path.isabs(name):
            names[i] = full[len(base) + 1:]
    seen = pd.Series(names).duplicated()
    if seen.any():
        i = int(np.flatnonzero(seen.to_numpy())[0])
        first = int(np.flatnonzero(names == names[i])[0])
        raise UserError(f"{path}, row {i + 2}, column '{column}': {names[i]!r} is listed twice (also row "
                        f"{first + 2}); each image once.")  # fmt: skip
    return names


def demographics(sex: Sequence[object] | None, age: Sequence[object] | None, view: Sequence[object] | None, n: int
                 ) -> Demographics:  # fmt: skip
    """Sex as M/F ("" unknown), age in whole years (-1 unknown), view as PA/AP/LATERAL/... ("" unknown)."""
    def text(values: Sequence[object] | None, fn: Callable[[str], object]) -> np.ndarray:
        return np.full(n, fn(""), dtype=object) if values is None else per_distinct(values, fn)

    s = text(sex, lambda v: {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}.get(v.strip().upper(), ""))
    years = text(age, _years).astype(np.int64)
    return Demographics(s, years, text(view, lambda v: v.strip().upper()))  # object arrays of str: no copy


def _years(cell: str) -> int:
    """An age cell in whole years, -1 when blank, not a number or outside 0-120."""
    try:
        years = float(cell)
    except ValueError:
        return -1
    return int(years) if 0 <= years <= 120 else -1


def check_trainable(labels: np.ndarray, names: Sequence[str], where: str) -> None:
    """Refuse a label with no positive, or no negative, among the training images: nothing to learn from."""
    for j, name in enumerate(names):
        n_pos, n_neg = int((labels[:, j] == 1).sum()), int((labels[:, j] == 0).sum())
        if n_pos == 0 or n_neg == 0:
            missing = "positive" if n_pos == 0 else "negative"
            raise UserError(
                f"{where}: the label '{name}' has no {missing} among the {len(labels):,} training images "
                f"({n_pos} positive, {n_neg} negative, the rest unknown), so a model cannot learn it. Leave it out "
                f"with --labels, or add images that show it."
            )


def pick_labels(available: Sequence[str], asked: str | None, path: Path) -> list[str]:
    """The label columns to use: all of `available`, or those --labels names (each must exist)."""
    if asked is None:
        return list(available)
    wanted = [a.strip() for a in asked.split(",") if a.strip()]
    absent = [a for a in wanted if a not in available]
    if absent or not wanted:
        raise UserError(f"--labels {asked!r}: {', '.join(absent) or 'nothing'} not among the labels of {path} "
                        f"({', '.join(available)}).")  # fmt: skip
    return wanted
