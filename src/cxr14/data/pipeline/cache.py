"""A one-time, resumable cache of resized images: decode every PNG once, then read pixels for free.

Decoding a 1024x1024 PNG and resizing it costs 13-21 ms per image per core, every epoch; copying the
same pixels out of a pre-resized uint8 memory map costs microseconds. `prepare` fills the cache in
parallel, `open_cache` finds one that fits the files and size asked for (or says why none does), and
`CacheSource` serves it to `XrayDataset` like any other `ImageSource`.

One cache folder per size (`cache_dir/cache_<size>/`), so several sizes sit side by side:

    pixels.npy     uint8 (N, size, size), rows in sorted name order (a .npy: any numpy can memmap it)
    index.tsv      one `name<TAB>file bytes` line per row: the file list the cache was built from
    ok.npy         uint8 (N,): 0 marks a row whose image could not be decoded
    done.npy       uint8 (chunks,): 1 once a chunk of rows is written and flushed (what resuming reads)
    manifest.json  fingerprint, size, filter, counts; "complete": true only once every chunk is done
    lock           flock'ed while `prepare` runs, so two builds never write the same folder

The fingerprint covers the sorted file list, every file's size in bytes, the resize parameters and
FORMAT_VERSION. File sizes stand in for content: a re-downloaded or repaired PNG changes size with
near certainty, while mtimes change whenever the data set is copied to another disk, which would
throw away hours of decoding for nothing. Pixel data is never hashed (too slow for 112k files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import PIL
from PIL import Image
from tqdm import tqdm

from cxr14.data.films.decode import DECODE_ERRORS, read_gray
from cxr14.data.films.pixels import RESIZE_FILTER, resize_gray
from cxr14.errors import UserError
from cxr14.files import exclusive, write_text

log = logging.getLogger(__name__)

#: Bump whenever the layout or the decode/resize semantics change: older caches are then rebuilt.
FORMAT_VERSION = 1
#: Rows per unit of work and of resumable progress: ~0.25 s of decoding, so flushing costs nothing.
CHUNK_ROWS = 16
BAD_IMAGE_CHOICES = ("fail", "skip")

ARRAY_FILE = "pixels.npy"
INDEX_FILE = "index.tsv"
OK_FILE = "ok.npy"
DONE_FILE = "done.npy"
MANIFEST_FILE = "manifest.json"


def cache_path(cache_dir: Path, size: int) -> Path:
    """The folder holding the cache for one size."""
    return Path(cache_dir) / f"cache_{size}"


@dataclass(frozen=True)
class CacheInfo:
    """What `prepare` built: where, for how many images, which were unreadable, how much was reused."""

    directory: Path
    size: int
    n_images: int
    bad: tuple[str, ...]
    n_reused: int  # rows already done by an earlier (interrupted or complete) run

    @property
    def n_bad(self) -> int:
        return len(self.bad)


@dataclass(frozen=True)
class _Plan:
    """The sorted file list and its fingerprint: everything that decides the cache's bytes."""

    names: list[str]
    paths: list[str]
    nbytes: list[int]
    size: int
    index_text: str
    fingerprint: str


def _file_bytes(path: Path | str | None) -> int:
    """Size of a file in bytes, -1 if it is absent: a missing file is part of the fingerprint too."""
    if path is None:
        return -1
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _fingerprint(index_text: str, size: int) -> str:
    header = f"cxr14 cache format {FORMAT_VERSION}\nsize {size}\nfilter {RESIZE_FILTER}\n"
    return hashlib.sha256((header + index_text).encode()).hexdigest()


def _make_plan(names: Sequence[str], paths: Sequence[Path | None], size: int) -> _Plan:
    """Sort by name (the same files in any order give the same cache) and fingerprint them."""
    if len(names) != len(paths):
        raise ValueError(f"{len(names)} names but {len(paths)} paths")
    if len(set(names)) != len(names):
        raise ValueError("image names must be unique")
    if any("\t" in n or "\n" in n for n in names):
        raise ValueError("image names must not contain tabs or newlines")
    order = sorted(range(len(names)), key=lambda i: names[i])
    sorted_names = [names[i] for i in order]
    sorted_paths = [str(paths[i]) if paths[i] is not None else "" for i in order]
    nbytes = [_file_bytes(paths[i]) for i in order]
    index_text = "".join(f"{n}\t{b}\n" for n, b in zip(sorted_names, nbytes, strict=True))
    return _Plan(sorted_names, sorted_paths, nbytes, size, index_text, _fingerprint(index_text, size))


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    """A reader sees the old manifest or the new one, never half of one."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _npy_layout(path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """(data offset, shape, dtype) from a .npy header, without mapping or reading the data."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        return f.tell(), shape, dtype


def _npy_problem(path: Path, shape: tuple[int, ...]) -> str | None:
    """Why a uint8 .npy file is not the array the manifest promises (absent, reshaped, truncated)."""
    try:
        offset, found, dtype = _npy_layout(path)
    except (OSError, ValueError) as exc:
        return f"{path.name} is unreadable ({exc})"
    if tuple(found) != tuple(shape) or dtype != np.uint8:
        return f"{path.name} holds {dtype} {tuple(found)}, expected uint8 {tuple(shape)}"
    expected = offset + int(np.prod(shape))
    actual = path.stat().st_size
    if actual < expected:
        return f"{path.name} is truncated ({actual} of {expected} bytes)"
    return None


def _intact_problem(directory: Path, manifest: dict[str, Any]) -> str | None:
    """Why the files of a cache folder do not match its manifest; None if they do."""
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"format version {manifest.get('format_version')}, this code reads {FORMAT_VERSION}"
    if manifest.get("filter") != RESIZE_FILTER:
        return f"resized with {manifest.get('filter')!r}, not {RESIZE_FILTER!r}"
    try:
        n, size, chunk_rows = (int(manifest[k]) for k in ("n_images", "size", "chunk_rows"))
        index_sha = (directory / INDEX_FILE).read_bytes()
    except (KeyError, TypeError, ValueError, OSError) as exc:
        return f"incomplete manifest or index ({type(exc).__name__}: {exc})"
    if hashlib.sha256(index_sha).hexdigest() != manifest.get("index_sha256"):
        return f"{INDEX_FILE} does not match the manifest"
    n_chunks = -(-n // chunk_rows)
    for name, shape in ((ARRAY_FILE, (n, size, size)), (OK_FILE, (n,)), (DONE_FILE, (n_chunks,))):
        problem = _npy_problem(directory / name, shape)
        if problem:
            return problem
    return None


# --- building -------------------------------------------------------------------------------------


def _manifest(plan: _Plan, data_dir: Path, complete: bool, bad: Sequence[str]) -> dict[str, Any]:
    """Everything here is a function of the inputs (no timestamps), so a resumed build ends
    byte-identical to an uninterrupted one."""
    return {
        "format_version": FORMAT_VERSION,
        "complete": complete,
        "fingerprint": plan.fingerprint,
        "size": plan.size,
        "filter": RESIZE_FILTER,
        "n_images": len(plan.names),
        "chunk_rows": CHUNK_ROWS,
        "index_sha256": hashlib.sha256(plan.index_text.encode()).hexdigest(),
        "data_dir": str(data_dir),
        "pillow": PIL.__version__,
        "n_bad": len(bad),
        "bad": list(bad),
    }


def _n_chunks(n: int) -> int:
    return -(-n // CHUNK_ROWS)


def _create_fresh(directory: Path, plan: _Plan, data_dir: Path) -> None:
    """Empty arrays, the index and an incomplete manifest; the old manifest goes first, so no
    manifest ever describes half-made files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST_FILE).unlink(missing_ok=True)
    n, size = len(plan.names), plan.size
    need = n * size * size + n + _n_chunks(n)
    free = _free_bytes(directory)
    if free < need:
        raise UserError(
            f"Not enough disk space for the {size} px cache of {n} images in {directory}: it needs "
            f"{need / 2**30:.1f} GiB and {free / 2**30:.1f} GiB are free. Free some space, pass another "
            f"--cache_dir, or a smaller --image_size."
        )
    for name, shape in ((ARRAY_FILE, (n, size, size)), (OK_FILE, (n,)), (DONE_FILE, (_n_chunks(n),))):
        arr = np.lib.format.open_memmap(directory / name, mode="w+", dtype=np.uint8, shape=shape)
        del arr  # a sparse file of zeros: nothing is held in memory
    (directory / INDEX_FILE).write_text(plan.index_text)
    _write_json_atomic(directory / MANIFEST_FILE, _manifest(plan, data_dir, complete=False, bad=()))


def _free_bytes(directory: Path) -> int:
    """Free space, counting the old array file that a fresh build will overwrite."""
    old = directory / ARRAY_FILE
    fs = os.statvfs(directory)
    return fs.f_bavail * fs.f_frsize + (old.stat().st_blocks * 512 if old.exists() else 0)


def _read_index(directory: Path) -> tuple[list[str], np.ndarray]:
    """(names, file bytes) of a cache's rows."""
    names, nbytes = [], []
    with open(directory / INDEX_FILE) as f:
        for line in f:
            name, b = line.rstrip("\n").split("\t")
            names.append(name)
            nbytes.append(int(b))
    return names, np.asarray(nbytes, dtype=np.int64)


def _forget_changed(directory: Path, plan: _Plan, data_dir: Path) -> bool:
    """Same file list but some files changed size (e.g. re-downloaded after a failed build): mark
    only their chunks as not done, instead of decoding everything again. False if the lists differ."""
    old_names, old_bytes = _read_index(directory)
    if old_names != plan.names:
        return False
    changed = np.flatnonzero(old_bytes != np.asarray(plan.nbytes, dtype=np.int64))
    done = np.load(directory / DONE_FILE, mmap_mode="r+")
    done[np.unique(changed // CHUNK_ROWS)] = 0
    done.flush()
    del done
    log.info("%d file(s) changed since the cache was started: redoing their chunks", len(changed))
    (directory / INDEX_FILE).write_text(plan.index_text)
    _write_json_atomic(directory / MANIFEST_FILE, _manifest(plan, data_dir, complete=False, bad=()))
    return True


def _resume_or_start(directory: Path, plan: _Plan, data_dir: Path) -> bool:
    """Get the cache folder ready for `plan`; True if it already holds the finished cache."""
    manifest = _read_manifest(directory)
    usable = (
        manifest is not None
        and manifest.get("chunk_rows") == CHUNK_ROWS
        and manifest.get("size") == plan.size
        and manifest.get("n_images") == len(plan.names)
        and _intact_problem(directory, manifest) is None
    )
    if usable and manifest["fingerprint"] == plan.fingerprint:
        return bool(manifest.get("complete"))
    if not (usable and _forget_changed(directory, plan, data_dir)):
        if manifest is not None:
            log.info("cache in %s was built for other files: rebuilding it", directory)
        _create_fresh(directory, plan, data_dir)
    return False


def _decode_chunk(array_path: str, offset: int, size: int, start: int, paths: list[str]) -> tuple:
    """Worker: decode one chunk straight into its rows of the array file, flush, and send back only
    the row range and the failures (never the pixels). Maps just this chunk, so a worker's memory
    stays a chunk's worth however large the cache."""
    rows = np.memmap(
        array_path,
        dtype=np.uint8,
        mode="r+",
        offset=offset + start * size * size,
        shape=(len(paths), size, size),
    )
    bad: list[tuple[int, str]] = []
    for k, path in enumerate(paths):
        try:
            rows[k] = read_gray(path, size)
        except DECODE_ERRORS as exc:
            rows[k] = 0
            bad.append((start + k, f"{type(exc).__name__}: {exc}"))
    rows.flush()  # on disk before the main process marks the chunk done
    del rows
    return start, len(paths), bad


def _decoded_chunks(tasks: list[tuple], workers: int) -> Iterator[tuple]:
    """Results of `_decode_chunk` as they finish. workers=1 runs in this process (debugging, tests).

    Fork on Linux: "spawn" re-imports the caller's __main__ in every worker (torch and all, for
    the CLI or a script: seconds and hundreds of MiB per worker, measured at 43% of the ideal
    rate). Forking is safe here because workers only touch PIL, numpy and their own files, never
    CUDA or the parent's threads; the same reasoning as DataLoader's default. Spawn elsewhere
    (fork is unsafe on macOS).
    A ProcessPoolExecutor, not a Pool: a worker killed by the OS (out of memory, SIGBUS on a full
    disk) raises BrokenProcessPool instead of hanging forever.
    """
    if workers <= 1:
        for task in tasks:
            yield _decode_chunk(*task)
        return
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
    try:
        futures = [pool.submit(_decode_chunk, *task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()
    except BrokenProcessPool as exc:
        raise UserError(
            f"A process decoding images for the cache died ({exc}). The usual causes: the machine ran out "
            f"of memory or the disk filled up (pass fewer --workers, or another --cache_dir), or a script "
            f"called prepare() without an `if __name__ == '__main__':` guard. Re-run to resume: the "
            f"images decoded so far are kept."
        ) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C or a failure: stop after running chunks


def _bad_image_error(path: str, error: str, directory: Path) -> UserError:
    return UserError(
        f"Cannot decode image {path or '(not found)'} ({error}) while building the cache in {directory}. "
        f"The file is corrupt, truncated or missing: download it again and re-run (the images decoded so "
        f"far are kept and only what changed is redone), or pass --on_bad_image skip to cache the readable "
        f"images and mark this one bad (training then leaves it out and counts it)."
    )


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not the machine's
    except AttributeError:
        return os.cpu_count() or 1


def prepare(
    data_dir: Path,
    names: Sequence[str],
    paths: Sequence[Path | None],
    size: int,
    cache_dir: Path,
    workers: int | None = None,
    progress: bool = True,
    on_bad_image: str = "fail",
) -> CacheInfo:
    """Decode every image once with `read_gray(path, size)` into `cache_dir/cache_<size>/`.

    Parallel over `workers` processes (default: all usable cores), each writing its chunk of rows
    straight into the memory-mapped array file, so memory stays flat however many images there are.
    Interrupted runs resume: re-running with the same files continues where it stopped and ends
    byte-identical to an uninterrupted run; a complete matching cache is returned at once.
    on_bad_image: "fail" raises UserError naming the first unreadable file; "skip" marks its row bad.
    """
    if on_bad_image not in BAD_IMAGE_CHOICES:
        raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_CHOICES}, not {on_bad_image!r}")
    if len(names) == 0:
        raise UserError(f"No images to cache from {data_dir}: the metadata named none that were found.")
    plan = _make_plan(names, paths, size)
    directory = cache_path(cache_dir, size)
    if on_bad_image == "fail" and -1 in plan.nbytes:
        row = plan.nbytes.index(-1)
        raise _bad_image_error(plan.paths[row] or plan.names[row], "file not found", directory)
    busy = (
        f"Another `cxr14 prepare` is building the cache in {directory} right now. Wait for it to finish (its "
        f"result will be reused), or pass another --cache_dir."
    )
    with exclusive(directory / "lock", busy):
        complete = _resume_or_start(directory, plan, data_dir)
        todo = np.flatnonzero(np.load(directory / DONE_FILE) == 0)
        n_reused = len(plan.names) - _rows_in(todo, len(plan.names))
        if not complete:
            _fill(directory, plan, todo, workers or default_workers(), progress, on_bad_image)
        ok = np.load(directory / OK_FILE)
        bad = tuple(plan.names[i] for i in np.flatnonzero(ok == 0))
        if not complete:
            _write_json_atomic(directory / MANIFEST_FILE, _manifest(plan, data_dir, complete=True, bad=bad))
    return CacheInfo(directory, size, len(plan.names), bad, n_reused)


def _rows_in(chunks: np.ndarray, n: int) -> int:
    """How many rows the given chunks hold (the last chunk may be short)."""
    return int(sum(min(CHUNK_ROWS, n - c * CHUNK_ROWS) for c in chunks.tolist()))


def _fill(directory: Path, plan: _Plan, todo: np.ndarray, workers: int, progress: bool, on_bad_image: str) -> None:
    """Decode the chunks in `todo`, recording each one as done only after its pixels are flushed."""
    n = len(plan.names)
    array_path = str(directory / ARRAY_FILE)
    offset = _npy_layout(directory / ARRAY_FILE)[0]
    tasks = []
    for chunk in todo.tolist():
        start = chunk * CHUNK_ROWS
        tasks.append((array_path, offset, plan.size, start, plan.paths[start : start + CHUNK_ROWS]))
    done = np.load(directory / DONE_FILE, mmap_mode="r+")
    ok = np.load(directory / OK_FILE, mmap_mode="r+")
    bar = tqdm(total=n, initial=n - _rows_in(todo, n), unit="img", desc=f"cache {plan.size}px", disable=not progress)
    with bar, contextlib.closing(_decoded_chunks(tasks, min(workers, len(tasks)))) as results:
        for start, count, bad in results:
            ok[start : start + count] = 1
            for row, error in bad:
                file = plan.paths[row] or plan.names[row]
                if on_bad_image == "fail":
                    raise _bad_image_error(file, error, directory)
                ok[row] = 0
                log.warning("unreadable image %s (%s): marked bad in the cache", file, error)
            ok.flush()
            done[start // CHUNK_ROWS] = 1
            done.flush()
            bar.update(count)
    if not done.all():
        raise RuntimeError(f"cache in {directory}: chunks left undone")  # a bug, not a user error


# --- reading --------------------------------------------------------------------------------------


class CacheSource:
    """An `ImageSource` over a built cache: item i is row `rows[i]` of the array file.

    The memory map is opened on the first read in each process, not here: the source then pickles
    into DataLoader workers as a few small arrays (a pickled memmap would be a full copy), and every
    worker maps the same file, so pages are shared through the OS page cache.
    """

    def __init__(
        self,
        array_path: Path | str,
        rows: np.ndarray,
        names: Sequence[str],
        ok: np.ndarray,
        size: int,
        built_size: int | None = None,
    ) -> None:
        self.array_path = str(array_path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.names = list(names)
        self.ok = np.asarray(ok, dtype=bool)
        self.size = size  # the training size; the cache may be larger and is then resized on read
        # Batches at the cache's own size are one memmap gather (~0.1 ms/image): DataLoader workers would
        # only add inter-process copies. Resizing on read is real work, and workers pay off again.
        self.gathers_batches = built_size in (None, size)
        self._pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pixels": None}

    def name(self, i: int) -> str:
        return self.names[i]

    def read_batch(self, items: Sequence[int]) -> np.ndarray | None:
        """uint8 (B, size, size) for the items in one fancy-indexed read of the map, or None.

        One gather per batch instead of B Python calls is what lets a 2-core loader keep up with a
        GPU. None means the per-item `read` must do the work: a resizing cache, or a bad row.
        """
        if not self.ok[items].all():
            return None
        if self._pixels is None:
            self._pixels = np.load(self.array_path, mmap_mode="r")
        if self._pixels.shape[1] != self.size:
            return None
        return self._pixels[self.rows[items]]  # fancy indexing copies: the batch is private and writable

    def read(self, i: int) -> np.ndarray:
        """uint8 (size, size) pixels of item i; ValueError for a row that was unreadable at build time."""
        if not self.ok[i]:
            raise ValueError(f"{self.names[i]} could not be decoded when the cache was built")
        if self._pixels is None:
            self._pixels = np.load(self.array_path, mmap_mode="r")
        row = self._pixels[self.rows[i]]
        if row.shape[0] == self.size:
            return np.array(row)  # a private, writable copy: the map is read-only and may be shared
        # Two resizes (1024 -> cache -> size) differ from one by a few grey levels.
        return np.array(resize_gray(Image.fromarray(np.asarray(row)), self.size))


class CacheLookup(NamedTuple):
    """`source` is None when no cache fits; `reason` says which cache is used, or why none is."""

    source: CacheSource | None
    reason: str


def open_cache(cache_dir: Path, names: Sequence[str], paths: Sequence[Path | None], size: int) -> CacheLookup:
    """The best complete cache for these files at `size`, or None and why not.

    Fits: complete, intact (array file as long as the manifest says), built for every requested name
    with the same file sizes as now (a superset is fine), at `size` or larger (exact size preferred:
    no resize on read). Costs one stat per file and a read of each candidate's index, no pixel data.
    """
    cache_dir = Path(cache_dir)
    found = sorted(
        (int(d.name.removeprefix("cache_")), d)
        for d in (cache_dir.glob("cache_*") if cache_dir.is_dir() else [])
        if d.name.removeprefix("cache_").isdigit() and d.is_dir()
    )
    if not found:
        return CacheLookup(None, f"no cache under {cache_dir}")
    reasons = [f"{d} is {s} px, smaller than {size} px" for s, d in found if s < size]
    current = None
    for built, directory in [(s, d) for s, d in found if s >= size]:
        if current is None:
            current = {n: _file_bytes(p) for n, p in zip(names, paths, strict=True)}
        source = _try_open(directory, list(names), current, size)
        if isinstance(source, CacheSource):
            how = "" if built == size else f", built at {built} px, resized to {size} px on read"
            return CacheLookup(source, f"using cache {directory} ({len(names)} images{how})")
        reasons.append(f"{directory}: {source}")
    return CacheLookup(None, "; ".join(reasons))


def _try_open(directory: Path, names: list[str], current: dict[str, int], size: int) -> CacheSource | str:
    """A CacheSource over `directory` for `names`, or the reason it cannot serve them."""
    manifest = _read_manifest(directory)
    if manifest is None:
        return "no readable manifest (a build interrupted at its very start?)"
    if not manifest.get("complete"):
        return "incomplete (interrupted build? run `cxr14 prepare` again to finish it)"
    problem = _intact_problem(directory, manifest)
    if problem:
        return f"damaged: {problem}"
    cache_names, cache_bytes = _read_index(directory)
    row_of = {n: r for r, n in enumerate(cache_names)}
    absent = [n for n in names if n not in row_of]
    if absent:
        return f"built for other files: {len(absent)} requested image(s) not in it, e.g. {absent[0]}"
    rows = np.fromiter((row_of[n] for n in names), dtype=np.int64, count=len(names))
    changed = [n for n, r in zip(names, rows.tolist(), strict=True) if cache_bytes[r] != current[n]]
    if changed:
        return f"stale: {len(changed)} file(s) changed size since it was built, e.g. {changed[0]}"
    ok = np.load(directory / OK_FILE)[rows].astype(bool)
    return CacheSource(directory / ARRAY_FILE, rows, names, ok, size, built_size=int(manifest["size"]))
