"""Several datasets as one: which sources a run reads, their label sets merged, their tables and splits joined.

A run names its sources either inline (`--dataset nih,chexpert,csv --data_dir A,B --csv C`: folders go to the
folder datasets in order, --csv to the csv one) or in a mix file (`--mix FILE`, JSON or TOML):

    [[source]]
    dataset = "nih"
    data_dir = "nih"             # relative paths are relative to the mix file
    weight = 2                   # share of the training batches, relative to the others (default: by size)
    [[source]]
    dataset = "chexpert"
    data_dir = "chexpert"
    uncertain = "zeros"          # any reader option (labels, uncertain, views, readers, labeler, negative, ...)

The label set is the union through cxr14's label map (`labels.SAME`: NIH's Effusion is CheXpert's Pleural
Effusion), one output per finding, named as the first source that has it names it; a finding a source does not
have is unknown for its films (no loss, no AUROC). Each source keeps its own patient-wise split rules and test
split; patients are numbered apart per source, so none crosses sources' splits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from cxr14.data.datasets import registry
from cxr14.data.datasets.base import Demographics, Metadata, Origin, ReadOptions
from cxr14.data.splits import Split
from cxr14.errors import UserError
from cxr14.labels import UNKNOWN, match

log = logging.getLogger(__name__)
SEPARATOR = ":"  # a mixed film's name: SOURCE:NAME
_ENTRY_KEYS = {"dataset", "data_dir", "name", "weight"} | {f.name for f in fields(ReadOptions)}


@dataclass(frozen=True)
class Source:
    """One dataset of a run: its name in the mix, its reader, its folder, its reader options and batch weight."""

    name: str
    dataset: str
    data_dir: Path
    options: ReadOptions
    weight: float | None = None


def sources(dataset: str, data_dir: Path, options: ReadOptions, mix: Path | None = None) -> list[Source]:
    """The run's sources: from the mix file, else from --dataset A,B with --data_dir X,Y (one source: as given)."""
    if mix is not None:
        return _named(read_mix(mix, options))
    names = [n.strip() for n in dataset.split(",") if n.strip()]
    if not names:
        raise UserError("--dataset is empty: name one dataset, or several comma-separated (nih,chexpert).")
    entries = [registry.get(n) for n in names]
    if len(entries) == 1:
        return [Source(names[0], names[0], data_dir, options)]
    folders = [Path(p) for p in str(data_dir).split(",")]
    needing = [e.name for e in entries if e.folder]
    if len(folders) != len(needing):
        raise UserError(f"--dataset {dataset} reads {len(needing)} folder(s) ({', '.join(needing)}) but --data_dir "
                        f"gives {len(folders)} ({data_dir}): give one folder per dataset read from a folder, in "
                        f"the same order, comma-separated (a csv dataset's films come from --csv).")  # fmt: skip
    if sum(not e.folder for e in entries) > 1:
        raise UserError("Two csv datasets cannot share --csv: describe them in a mix file (--mix).")
    per_source = replace(options, labels=None)  # --labels picks among the merged findings, not per source
    out, it = [], iter(folders)
    for e in entries:
        own = replace(per_source, csv=None) if e.folder else per_source  # --csv is the csv dataset's
        out.append(Source(e.name, e.name, next(it) if e.folder else Path("."), own))
    return _named(out)


def read_mix(path: Path, defaults: ReadOptions) -> list[Source]:
    """A mix file's sources; a bad entry gets one paragraph naming it."""
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"Cannot read the mix file {path} ({type(exc).__name__}: {exc}). It is JSON "
                        f'({{"source": [{{"dataset": "nih", "data_dir": "nih"}}, ...]}}) or TOML ([[source]] '
                        f"tables); see the README's Mixing datasets.") from exc  # fmt: skip
    entries = data.get("source", data.get("sources")) if isinstance(data, dict) else data
    if not isinstance(entries, list) or len(entries) < 1:
        raise UserError(f"{path} lists no source: give a list `source` of tables, each with a dataset and its "
                        f"data_dir (or csv).")  # fmt: skip
    out = []
    for k, entry in enumerate(entries, 1):
        out.append(_entry(path, k, entry, defaults))
    weighted = [s.weight is not None for s in out]
    if any(weighted) and not all(weighted):
        raise UserError(f"{path}: give every source a weight, or none (then each source's share of the batches is "
                        f"its size).")  # fmt: skip
    return out


def _entry(path: Path, k: int, entry: Any, defaults: ReadOptions) -> Source:
    where = f"{path}, source {k}"
    if not isinstance(entry, dict) or "dataset" not in entry:
        raise UserError(f"{where}: each source is a table with at least `dataset` (and `data_dir`, or `csv`).")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; a source takes "
                        f"{', '.join(sorted(_ENTRY_KEYS))}.")  # fmt: skip
    try:
        spec = registry.get(str(entry["dataset"]))
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    offered = set(spec.options)
    given = {k: v for k, v in entry.items() if k in {f.name for f in fields(ReadOptions)}}
    foreign = sorted(set(given) - offered)
    if foreign:
        raise UserError(f"{where}: {spec.name} does not take {', '.join(foreign)} (it takes "
                        f"{', '.join(spec.options) or 'no reader option'}).")  # fmt: skip
    for key in ("csv",):
        if key in given:
            given[key] = (path.parent / given[key]).resolve()
    if spec.folder and "data_dir" not in entry:
        raise UserError(f"{where}: {spec.name} is read from a folder: give its data_dir.")
    if not spec.folder and "csv" not in given:
        raise UserError(f"{where}: a csv source needs its csv.")
    weight = entry.get("weight")
    if weight is not None and (not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0):
        raise UserError(f"{where}: weight {weight!r} is not a positive number.")
    try:
        options = replace(defaults, **{"labels": None, **given})  # --labels is the mix's, not a source's
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None
    folder = (path.parent / str(entry.get("data_dir", "."))).resolve()
    return Source(str(entry.get("name", spec.name)), spec.name, folder, options,
                  None if weight is None else float(weight))  # fmt: skip


def _named(found: list[Source]) -> list[Source]:
    """Distinct names (a second chexpert is chexpert-2), safe in SOURCE:NAME film names."""
    seen: dict[str, int] = {}
    out = []
    for s in found:
        if SEPARATOR in s.name or not s.name:
            raise UserError(f"Source name {s.name!r}: give a non-empty name without {SEPARATOR!r}.")
        seen[s.name] = seen.get(s.name, 0) + 1
        out.append(s if seen[s.name] == 1 else replace(s, name=f"{s.name}-{seen[s.name]}"))
    return out


def union(label_sets: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], list[list[int]]]:
    """The merged label set and, per set, the merged column of each of its labels (exact matches only)."""
    merged: list[str] = []
    columns = []
    for names in label_sets:
        cols = []
        for label in names:
            found = match(merged, [label])
            if found and found[0][2] == "exact":
                cols.append(found[0][1][0])
            else:
                merged.append(label)
                cols.append(len(merged) - 1)
        columns.append(cols)
    return tuple(merged), columns


def merge_tables(parts: Sequence[tuple[Source, Metadata]]) -> Metadata:
    """One table of every source's films: names SOURCE:NAME, the merged labels (unknown where a source lacks one),
    patients numbered apart per source."""
    label_names, columns = union([m.label_names for _, m in parts])
    n = sum(len(m) for _, m in parts)
    labels = np.full((n, len(label_names)), UNKNOWN, dtype=np.int8)
    names, patients, source, sex, age, view, splits = [], [], [], [], [], [], []
    start, offset = 0, 0
    for k, ((src, meta), cols) in enumerate(zip(parts, columns, strict=True)):
        labels[start : start + len(meta), cols] = meta.labels
        names.append(np.char.add(f"{src.name}{SEPARATOR}", meta.names.astype(str)))
        codes = np.unique(meta.patients, return_inverse=True)[1].astype(np.int64)
        patients.append(codes + offset)
        offset += int(codes.max()) + 1 if len(codes) else 0
        source.append(np.full(len(meta), k, dtype=np.int64))
        d = meta.demographics
        sex.append(d.sex.astype(str))
        age.append(d.age)
        view.append(d.view.astype(str))
        splits.append(meta.split if meta.split is not None else np.full(len(meta), "", dtype=object))
        start += len(meta)
    origins = tuple(Origin(s.name, s.dataset, s.data_dir, m.root, s.weight) for s, m in parts)
    demo = Demographics(np.concatenate(sex), np.concatenate(age), np.concatenate(view))
    return Metadata(np.concatenate(names), labels, np.concatenate(patients), parts[0][1].source, demo, label_names,
                    root=None, split=np.concatenate(splits).astype(str) if all(m.split is not None for _, m in parts)
                    else None, by_image=all(m.by_image for _, m in parts), origin=np.concatenate(source),
                    origins=origins)  # fmt: skip


def join_splits(parts: Sequence[tuple[Source, Metadata, dict[str, Split]]]) -> dict[str, Split]:
    """Each source split by its own rules, joined split by split: names SOURCE:NAME, the merged labels (unknown
    where a source lacks one), patients numbered apart per source, rows grouped by source. Whole columns only: the
    three datasets of a mix are read in about the sum of the three alone (benchmarks/metadata_read.py)."""
    label_names, columns = union([m.label_names for _, m, _ in parts])
    origins = tuple(Origin(s.name, s.dataset, s.data_dir, m.root, s.weight) for s, m, _ in parts)
    patient_ids = [np.unique(m.patients) for _, m, _ in parts]
    offsets = np.cumsum([0, *(len(u) for u in patient_ids)])
    out = {}
    for name in ("train", "val", "test"):
        pieces = [own[name] for _, _, own in parts]
        n = sum(len(p) for p in pieces)
        labels = np.full((n, len(label_names)), UNKNOWN, dtype=np.int8)
        names, patients, origin, sex, age, view, start = [], [], [], [], [], [], 0
        for k, (piece, cols) in enumerate(zip(pieces, columns, strict=True)):
            labels[start : start + len(piece), cols] = piece.labels
            start += len(piece)
            prefix = f"{origins[k].name}{SEPARATOR}"
            names.append(np.array([prefix + str(x) for x in piece.names], dtype=object))
            patients.append(np.searchsorted(patient_ids[k], piece.patients).astype(np.int64) + offsets[k])
            origin.append(np.full(len(piece), k, dtype=np.int64))
            d = piece.demographics
            sex.append(d.sex)
            age.append(d.age)
            view.append(d.view)
        demo = Demographics(np.concatenate(sex), np.concatenate(age), np.concatenate(view))
        capped = sum(p.capped_from or len(p) for p in pieces) if any(p.capped_from for p in pieces) else None
        out[name] = Split(name, np.concatenate(names), labels, np.concatenate(patients), demo, label_names, capped,
                          None, all(p.by_image for p in pieces), np.concatenate(origin), origins)  # fmt: skip
    return out


def own_name(name: str) -> tuple[str, str]:
    """SOURCE:NAME -> (SOURCE, NAME)."""
    src, _, rest = name.partition(SEPARATOR)
    return src, rest
