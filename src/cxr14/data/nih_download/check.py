"""`cxr14 download --check`: is a data folder ready to train on? Reads only; downloads and changes nothing.

It looks at what training will look at, the same way (find_csv, read_data_entry, make_splits,
index_images, read_gray), in both layouts (NIH's `images/` and Kaggle's `images_NNN/images/`):
which metadata is there and which CSV version training reads, every CSV image on disk or not, PNGs
the CSV does not know, files that are not PNGs, list names the CSV lacks, a patient in two splits,
empty files and, with --deep, every PNG decoded. It ends with the command to run next.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cxr14.data.datasets.base import Metadata
from cxr14.data.datasets.nih import (
    check_data_dir,
    find_csv,
    find_in,
    image_dirs,
    index_images,
    read_data_entry,
    read_split_list,
)
from cxr14.data.films.decode import DECODE_ERRORS, read_gray
from cxr14.data.nih_download.archives import archives_holding, describe_numbers
from cxr14.data.nih_download.packaged import packaged_files, sha256_of
from cxr14.data.pipeline.cache import default_workers
from cxr14.data.splits import LIST_FILES, make_splits
from cxr14.errors import UserError

SHOWN = 5  # examples named per finding
DECODE_CHUNK = 64  # images per task: ~1 s of decoding at 1024 px


@dataclass
class FolderReport:
    """What the check found: `lines` is the printed report; `problems` would stop training (or make it wrong)."""

    data_dir: Path
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # path relative to data_dir -> why

    @property
    def ready(self) -> bool:
        return not self.problems


def check_folder(data_dir: Path, deep: bool = False, workers: int | None = None, progress: bool = True) -> FolderReport:
    """Print the report for `data_dir`; raise a UserError summing up the problems unless it is ready."""
    report = inspect_folder(data_dir, deep, workers, progress)
    print("\n".join(report.lines))
    if not report.ready:
        raise UserError(
            f"{data_dir} is not ready to train on: {'; '.join(report.problems)}. The report above says what to do."
        )
    return report


def inspect_folder(data_dir: Path, deep: bool, workers: int | None, progress: bool) -> FolderReport:
    """Look at everything training will look at; write the report's lines as it goes."""
    check_data_dir(data_dir)
    from cxr14.data.datasets import registry

    # another dataset's folder is named as such, not reported as a broken NIH one
    registry.check_layout(registry.get("nih"), data_dir)
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: give at least 1 decoding process (default: all cores).")
    report = FolderReport(data_dir, lines=[f"checking {data_dir}", "metadata:"])
    _metadata_lines(report)
    meta = _read_metadata(report)
    pngs = _image_lines(report)
    if meta is not None:
        _compare(report, meta, pngs)
        _check_lists(report, meta)
        _check_pixels(report, [pngs[n] for n in meta.names if n in pngs], deep, workers, progress)
    _next_steps(report)
    return report


def _metadata_lines(report: FolderReport) -> None:
    for entry in packaged_files():
        path = find_in(report.data_dir, entry.name)
        if path is None:
            state = "missing"
        else:
            same = sha256_of(path) == entry.sha256
            state = "NIH's exact bytes" if same else "present (not byte-identical to the packaged NIH copy; read as is)"
        report.lines.append(f"  {entry.name:40s} {state}")
    lists = [name for name in LIST_FILES.values() if not (report.data_dir / name).is_file()]
    if lists:
        report.problems.append(f"split list(s) {', '.join(lists)} missing (training would not use the official split)")
        report.fixes.append(f"cxr14 download --data_dir {report.data_dir}   (writes the metadata; nothing is fetched "
                            f"for images already present)")  # fmt: skip


def _read_metadata(report: FolderReport) -> Metadata | None:
    try:
        meta = read_data_entry(find_csv(report.data_dir))
    except UserError as exc:
        report.lines.append(f"  {exc}")
        report.problems.append(str(exc).split(". ")[0])
        if not report.fixes:
            report.fixes.append(f"cxr14 download --data_dir {report.data_dir}   (writes NIH's metadata, no network)")
        return None
    version = "the 2020 revision" if "v2020" in meta.source.name else "the 2017 release"
    report.lines.append(f"  training reads {meta.source.name} ({version}): {len(meta):,} images")
    return meta


def _image_lines(report: FolderReport) -> dict[str, Path]:
    """Index the image folders; note the layout, non-PNG entries and empty PNGs."""
    dirs = image_dirs(report.data_dir)
    kaggle = [d for d in dirs if d.parent != report.data_dir]
    layouts = (["NIH (images/)"] if len(dirs) > len(kaggle) else []) + (
        [f"Kaggle ({len(kaggle)} images_NNN/images/ folders)"] if kaggle else []
    )
    pngs = index_images(report.data_dir)
    report.lines.append(f"images: {' + '.join(layouts) or 'no image folder'}, {len(pngs):,} PNG files")
    for folder in dirs:
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = str(Path(entry.path).relative_to(report.data_dir))
                if not entry.name.endswith(".png") or not entry.is_file():
                    report.not_images.append(rel + ("/" if entry.is_dir() else ""))
                elif entry.stat().st_size == 0:
                    report.unreadable[rel] = "empty file"
    if report.not_images:
        report.lines.append(f"  not PNG files (training ignores them): {len(report.not_images):,}, e.g. "
                            f"{_examples(sorted(report.not_images))}")  # fmt: skip
    if not dirs:
        report.problems.append("no images/ or images_NNN/images/ folder")
        report.fixes.append(f"cxr14 download --data_dir {report.data_dir}")
    return pngs


def _compare(report: FolderReport, meta: Metadata, pngs: dict[str, Path]) -> None:
    """CSV images absent on disk (a problem) and PNGs the CSV does not name (a note)."""
    named = set(meta.names.tolist())
    report.missing = [n for n in meta.names.tolist() if n not in pngs]
    report.foreign = sorted(set(pngs) - named)
    present = len(meta) - len(report.missing)
    report.lines.append(f"  {present:,} of the CSV's {len(meta):,} images are present")
    if report.foreign:
        report.lines.append(f"  PNGs not in the CSV (training ignores them): {len(report.foreign):,}, e.g. "
                            f"{_examples(report.foreign)}")  # fmt: skip
    if not report.missing:
        return
    report.lines.append(f"  missing: {len(report.missing):,}, e.g. {_examples(report.missing)}")
    report.problems.append(f"{len(report.missing):,} of {len(meta):,} images named in the CSV are not on disk")
    numbers = archives_holding(report.missing)
    only = "" if len(numbers) in (0, 12) else f" --only {describe_numbers(numbers)}"
    where = f" (they are in NIH archive(s) {describe_numbers(numbers)})" if numbers else ""
    report.fixes.append(f"cxr14 download --data_dir {report.data_dir}{only}{where}; or train on the images "
                        f"present with --on_bad_image skip")  # fmt: skip


def _check_lists(report: FolderReport, meta: Metadata) -> None:
    """List names the CSV lacks, CSV images in neither list, and training's own split check."""
    paths = {k: report.data_dir / v for k, v in LIST_FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        return
    named, listed, consistent = set(meta.names.tolist()), set(), True
    for path in paths.values():
        names = read_split_list(path)
        listed.update(names)
        absent = [n for n in names if n not in named]
        report.lines.append(f"  {path.name}: {len(names):,} names" + (f", {len(absent):,} not in the CSV: "
                            f"{_examples(absent)}" if absent else ""))  # fmt: skip
        if absent:
            consistent = False
            report.problems.append(f"{path.name} names {len(absent):,} image(s) that are not in {meta.source.name}")
            report.fixes.append(f"use the lists that came with {meta.source.name} (cxr14 download writes NIH's)")
    unlisted = len(named - listed)
    if unlisted:
        report.lines.append(f"  {unlisted:,} CSV image(s) are in neither list (training does not use them)")
    if consistent:
        try:
            make_splits(meta, report.data_dir, 0.1, 0, (None, None))  # exactly training's check (patient leaks)
        except UserError as exc:
            report.problems.append(str(exc).split(": ")[0])


def _check_pixels(report: FolderReport, paths: list[Path], deep: bool, workers: int | None, progress: bool) -> None:
    if deep:
        for path, why in decode_all([str(p) for p in paths], workers or default_workers(), progress):
            report.unreadable.setdefault(os.path.relpath(path, report.data_dir), why)
        report.lines.append(f"  decoded {len(paths):,} PNG(s) named in the CSV")
    else:
        report.lines.append("  PNGs not decoded (--deep decodes every one)")
    if report.unreadable:
        listed = [f"{path} ({why})" for path, why in sorted(report.unreadable.items())]
        report.lines.append(f"  unreadable: {len(listed):,}, e.g. {_examples(listed)}")
        report.problems.append(f"{len(listed):,} image(s) cannot be read")
        report.fixes.append(f"delete the unreadable files, then cxr14 download --data_dir {report.data_dir} gets "
                            f"their archives again")  # fmt: skip


def _next_steps(report: FolderReport) -> None:
    d = report.data_dir
    if report.ready:
        report.lines += [
            "ready: training will start cleanly.",
            f"next: cxr14 prepare --data_dir {d} --image_size 384   (once; training then reads a cache, not PNGs)",
            f"      python main.py --data_dir {d}",
        ]
        return
    report.lines.append(f"not ready ({len(report.problems)} problem(s)):")
    report.lines += [f"  - {p}" for p in report.problems]
    report.lines += [f"next: {fix}" for fix in dict.fromkeys(report.fixes)]


def _examples(items: Sequence[str]) -> str:
    more = f", ... ({len(items) - SHOWN:,} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _decode_chunk(paths: list[str]) -> list[tuple[str, str]]:
    """Worker: decode with the project's one decode path; return (path, reason) for each failure."""
    bad = []
    for path in paths:
        try:
            read_gray(path)
        except DECODE_ERRORS as exc:
            bad.append((path, f"{type(exc).__name__}: {exc}"))
    return bad


def decode_all(paths: list[str], workers: int, progress: bool = True) -> list[tuple[str, str]]:
    """Decode every file on `workers` processes (fork on Linux, as the cache does); (path, reason) per failure."""
    chunks = [paths[i : i + DECODE_CHUNK] for i in range(0, len(paths), DECODE_CHUNK)]
    bad: list[tuple[str, str]] = []
    with tqdm(total=len(paths), unit="img", desc="decode", disable=not progress) as bar:
        if workers <= 1 or len(chunks) <= 1:
            for chunk in chunks:
                bad += _decode_chunk(chunk)
                bar.update(len(chunk))
            return bad
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        try:
            with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context(method)) as pool:
                futures = {pool.submit(_decode_chunk, chunk): len(chunk) for chunk in chunks}
                for future in as_completed(futures):
                    bad += future.result()
                    bar.update(futures[future])
        except BrokenProcessPool as exc:
            raise UserError(f"A process decoding images died ({exc}); the machine may be out of memory: pass "
                            f"fewer --workers.") from exc  # fmt: skip
    return bad


def check_dataset(cfg: Any) -> None:
    """`cxr14 download --check --dataset X` for the datasets other than NIH: the metadata reads cleanly (every
    file, row and column checked as training reads them) and every film it lists is in the folder."""
    from cxr14.data.pipeline.loaders import image_index, read_metadata
    from cxr14.data.splits import make_splits

    meta = read_metadata(cfg, views="all")
    make_splits(meta, cfg.data_dir, 0.1, 0, (None, None))  # a patient in two of the data's own splits is refused
    index = image_index(cfg, meta)
    missing = [n for n in meta.names if n not in index]
    lines = [
        f"{cfg.dataset} metadata: {meta.source} ({len(meta):,} films of {len(np.unique(meta.patients)):,} "
        f"{'images (no patients named)' if meta.by_image else 'patients'}; labels {', '.join(meta.label_names)})",
        f"split: {_split_text(meta)}",
        f"films: {len(meta) - len(missing):,} of {len(meta):,} present under {meta.root or cfg.data_dir}",
    ]  # fmt: skip
    print("\n".join(lines))
    if missing:
        raise UserError(
            f"{len(missing):,} film(s) that {meta.source} lists are not under {meta.root or cfg.data_dir} (e.g. "
            f"{', '.join(missing[:3])}): unpack every part of the download there, or train with --on_bad_image skip."
        )
    from cxr14.data.datasets import registry

    if cfg.mix is not None:
        print(f"ready: cxr14 train --mix {cfg.mix}")
        return
    where = f"--data_dir {cfg.data_dir}" if registry.get(cfg.dataset).folder else f"--csv {cfg.csv}"
    print(f"ready: cxr14 train --dataset {cfg.dataset} {where}")


def _split_text(meta: Any) -> str:
    if meta.split is None:
        return "none of its own: a seeded patient-wise one"
    counts = ", ".join(f"{k} {int((meta.split == k).sum()):,}" for k in ("train", "val", "test"))
    return f"its own ({counts}; validation carved from train by patient when it has none)"
