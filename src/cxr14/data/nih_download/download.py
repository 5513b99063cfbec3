"""`cxr14 download`: NIH's 12 archives fetched, MD5-verified and unpacked into DATA_DIR/images.

One command that can be stopped (Ctrl-C, a dead connection, a reboot) and run again at any time;
what it leaves in DATA_DIR says where it stands:

    images_NN.tar.gz.part      a partial download: the next run continues it from its last byte
    images_NN.tar.gz           a complete download whose MD5 matched (deleted once unpacked, unless
                               --keep_archives); one put there by hand is verified and unpacked too
    .cxr14-unpack-images_NN/   an unpacking in progress (an interrupted one is redone from the archive)
    .cxr14-download.json       the archives unpacked so far: a second run fetches and unpacks nothing
    .cxr14-download.lock       held while a download runs, so two never write the same folder

The metadata comes from the package (no network), before anything else, so even a machine that
cannot reach NIH ends up with the CSVs and split lists.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
import threading
import urllib.parse
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import requests

from cxr14.config import DownloadConfig
from cxr14.data.datasets.nih import index_images
from cxr14.data.nih_download.archives import (
    Archive,
    nih_archives,
    nih_contents,
    parse_only,
    read_urls_file,
    select,
    with_base_url,
)
from cxr14.data.nih_download.check import check_dataset, check_folder
from cxr14.data.nih_download.extract import unpack
from cxr14.data.nih_download.fetch import Progress, Stopped, fetch, make_session, md5_of
from cxr14.data.nih_download.net import reachable
from cxr14.data.nih_download.packaged import write_metadata
from cxr14.errors import UserError
from cxr14.files import exclusive, write_text

log = logging.getLogger(__name__)

STATE_FILE = ".cxr14-download.json"
LOCK_FILE = ".cxr14-download.lock"
GIB = 1 << 30


def wanted(cfg: DownloadConfig) -> list[Archive]:
    """The archives to get, from NIH, a mirror folder or a URL list, narrowed by --only."""
    only = parse_only(cfg.only) if cfg.only is not None else None
    if cfg.urls_file is not None:
        table = read_urls_file(cfg.urls_file)
    elif cfg.base_url:
        table = with_base_url(nih_archives(), cfg.base_url)
    else:
        table = nih_archives()
    return select(table, only)


def run_download(cfg: DownloadConfig) -> list[str]:
    """`cxr14 download`: fetch (or, with --check, inspect) and say what to run next."""
    if cfg.check and (cfg.dataset != "nih" or cfg.mix is not None):
        check_dataset(cfg)
        return []
    if cfg.check:
        check_folder(cfg.data_dir, deep=cfg.deep, workers=cfg.workers, progress=cfg.progress)
        return []
    done = download(cfg)
    print(f"{len(done)} archive(s) unpacked by this run into {cfg.data_dir / 'images'}. "
          f"Next: cxr14 download --check --data_dir {cfg.data_dir}")  # fmt: skip
    return done


def download(settings: DownloadConfig) -> list[str]:
    """Write the metadata, then fetch, verify and unpack every archive not yet unpacked.

    Returns the names of the archives unpacked by this run. A UserError names each archive that failed;
    the others are complete and recorded, and a rerun continues with the failed ones.
    """
    data_dir = settings.data_dir
    archives = wanted(settings)  # a bad --only or --urls_file is refused before anything is written
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot make the data folder {data_dir} ({exc}); pass another --data_dir.") from exc
    busy = f"Another `cxr14 download` is writing into {data_dir} right now; wait for it, or stop it first."
    with exclusive(data_dir / LOCK_FILE, busy):
        write_metadata(data_dir)
        todo = _not_yet_unpacked(data_dir, archives)
        if not todo:
            log.info("all %d archive(s) asked for are already unpacked in %s: nothing to download", len(archives),
                     data_dir / "images")  # fmt: skip
            return []
        _check_disk(data_dir, todo, settings)
        _check_hosts(data_dir, [a for a in todo if not (data_dir / a.filename).is_file()], settings.timeout)
        done, failures = _run(todo, settings)
    if failures:
        kept = f" (the other {len(done)} are complete and kept)" if done else ""
        raise UserError(f"{len(failures)} of {len(todo)} archive(s) failed{kept}. " + " ".join(failures))
    return done


def _read_state(data_dir: Path) -> dict[str, dict]:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        return state["unpacked"] if isinstance(state.get("unpacked"), dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _not_yet_unpacked(data_dir: Path, archives: list[Archive]) -> list[Archive]:
    """The archives whose images are not all in the folder yet.

    An archive counts as unpacked if this tool recorded it and its images are still there, or (for NIH's
    own files) if every image NIH put into it is present, e.g. from Kaggle's copy or an earlier manual
    download: nothing is fetched again that the folder already holds.
    """
    state, present = _read_state(data_dir), sorted(index_images(data_dir))
    contents: dict[int, list[str]] | None = None  # read only when needed (parses the packaged CSV)
    nih_md5 = {a.number: a.md5 for a in nih_archives()}
    todo = []
    for archive in archives:
        record = state.get(str(archive.number))
        if record and record.get("md5") == archive.md5:
            n = bisect.bisect_right(present, record["last"]) - bisect.bisect_left(present, record["first"])
            if n >= record["images"]:
                log.info("%s: unpacked earlier (%s images present)", archive.filename, f"{n:,}")
                continue
            log.warning("%s was unpacked earlier, but only %s of its %s images are in %s now: getting it again",
                        archive.filename, f"{n:,}", f"{record['images']:,}", data_dir)  # fmt: skip
        elif archive.md5 == nih_md5[archive.number]:
            contents = contents or nih_contents()
            expected = contents[archive.number]
            if present and set(expected).issubset(present):
                log.info("%s: all its %s images are already present", archive.filename, f"{len(expected):,}")
                continue
        todo.append(archive)
    return todo


def _check_disk(data_dir: Path, todo: list[Archive], settings: DownloadConfig) -> None:
    """Enough free space for the unpacked images (PNGs barely compress: about the archives' size) plus the
    archives held at once: the `jobs` largest downloads still to come, or all of them with --keep_archives."""
    remaining = []
    for archive in todo:
        final, part = data_dir / archive.filename, data_dir / f"{archive.filename}.part"
        have = final.stat().st_size if final.is_file() else part.stat().st_size if part.is_file() else 0
        remaining.append(max(archive.nbytes - have, 0))
    held = sum(remaining) if settings.keep_archives else sum(sorted(remaining)[-settings.jobs :])
    need = sum(a.nbytes for a in todo) + held
    free = shutil.disk_usage(data_dir).free
    if need > free:
        raise UserError(
            f"Not enough disk space in {data_dir}: {len(todo)} archive(s) need about {need / GIB:.1f} GiB (the "
            f"unpacked images plus the archives held at once{', all kept' if settings.keep_archives else ''}), and "
            f"{free / GIB:.1f} GiB are free. Free some space, pick a --data_dir on a larger disk, or fetch fewer "
            f"archives at a time with --only (e.g. --only 1 is 4,999 images, about 1.9 GiB)."
        )


def _check_hosts(data_dir: Path, to_fetch: list[Archive], timeout: float) -> None:
    """One quick connect per host (or its proxy) before any retry loop, so "no network" takes seconds."""
    seconds = min(timeout, 5.0)
    for host, port in sorted({_endpoint(a.url) for a in to_fetch}):
        if not reachable(host, port, seconds):
            raise UserError(
                f"Cannot reach {host} (port {port}) from this machine within {seconds:.0f} s, so the images cannot "
                f"be downloaded here. The metadata (both Data_Entry CSVs, the split lists, the box list and "
                f"Google's labels) was written to {data_dir} anyway. To get the images, either point --base_url "
                f"at a mirror folder holding images_01.tar.gz .. images_12.tar.gz, or --urls_file at a CSV of "
                f"URLs (see --help); or download the archives on another machine (URLs in cxr14/nih/archives.csv), "
                f"copy them into {data_dir} and run this command again: it verifies and unpacks them without a "
                f"network. Behind a proxy, set HTTPS_PROXY."
            )


def _endpoint(url: str) -> tuple[str, int]:
    """(host, port) a request for `url` connects to first: its proxy's, if the environment sets one."""
    proxy = requests.utils.get_environ_proxies(url).get(urllib.parse.urlsplit(url).scheme)
    parts = urllib.parse.urlsplit(proxy if proxy and "://" in proxy else url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _run(todo: list[Archive], settings: DownloadConfig) -> tuple[list[str], list[str]]:
    """Up to `jobs` archives at a time, one shared progress bar; Ctrl-C stops every thread cleanly."""
    data_dir, stop, lock = settings.data_dir, threading.Event(), threading.Lock()
    expected = {f"{a.filename}.part": a.nbytes for a in todo if not (data_dir / a.filename).is_file()}
    initial = sum((data_dir / name).stat().st_size for name in expected if (data_dir / name).is_file())
    progress = Progress(expected, initial, settings.progress)
    log.info("getting %d archive(s) into %s, %d at a time", len(todo), data_dir, settings.jobs)
    done: list[str] = []
    failures: list[str] = []
    pool = ThreadPoolExecutor(settings.jobs, thread_name_prefix="download")
    try:
        pending = {pool.submit(_one, a, settings, progress, stop, lock): a for a in todo}
        while pending:
            # Wake up twice a second: a main thread blocked without a timeout would not see Ctrl-C
            # until an archive finished, which can take half an hour.
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                archive = pending.pop(future)
                try:
                    future.result()
                    done.append(archive.filename)
                except UserError as exc:
                    failures.append(str(exc))
                progress.note(f"{len(done)} of {len(todo)} unpacked")
    except KeyboardInterrupt:
        stop.set()
        log.warning("interrupted: partial downloads are kept as .part files; run the same command to continue")
        raise
    finally:
        stop.set()  # no-op after a normal finish; after an error it ends the other threads' loops
        pool.shutdown(wait=True, cancel_futures=True)
        progress.close()
    return sorted(done), failures


def _one(
    archive: Archive, s: DownloadConfig, progress: Progress, stop: threading.Event, lock: threading.Lock
) -> None:
    """Fetch (or find), verify, unpack and record one archive."""
    try:
        path = _verified_archive(archive, s, progress, stop)
        log.info("%s: unpacking into %s", archive.filename, s.data_dir / "images")
        names = unpack(path, s.data_dir, stop)
    except Stopped:  # only after Ctrl-C or another thread's crash, when nobody counts the results any more
        return
    except OSError as exc:
        raise UserError(f"{archive.filename}: cannot write into {s.data_dir} ({exc}).") from exc
    if names:
        with lock:
            state = _read_state(s.data_dir)
            record = {"md5": archive.md5, "images": len(names), "first": names[0], "last": names[-1]}
            state[str(archive.number)] = record
            write_text(s.data_dir / STATE_FILE, json.dumps({"unpacked": state}, indent=1, sort_keys=True) + "\n")
    if not s.keep_archives:
        path.unlink()
    note = "" if len(names) == archive.images else f" (the table says {archive.images:,})"
    log.info("%s: %s images unpacked%s", archive.filename, f"{len(names):,}", note)


def _verified_archive(archive: Archive, s: DownloadConfig, progress: Progress, stop: threading.Event) -> Path:
    """The archive with NIH's MD5 on disk: found, or downloaded; a mismatch is deleted and fetched once more."""
    final, part = s.data_dir / archive.filename, s.data_dir / f"{archive.filename}.part"
    got = ""
    for attempt in (1, 2):
        candidate = final if final.is_file() else part
        if candidate is part:
            progress.expect(part.name, archive.nbytes)
            with make_session() as session:
                fetch(session, archive.url, part, progress, stop, s.timeout)
        got = md5_of(candidate, stop)
        if got == archive.md5:
            if candidate is part:
                os.replace(part, final)
            log.info("%s: MD5 ok", archive.filename)
            return final
        size = candidate.stat().st_size
        candidate.unlink()
        if candidate is part:
            progress.add(-size)
        if attempt == 1:
            log.warning("%s: MD5 %s is not %s: deleted it, downloading it again", candidate.name, got, archive.md5)
    raise UserError(
        f"Archive {archive.number} ({archive.filename}) from {archive.url} failed its MD5 check twice (got {got}, "
        f"expected {archive.md5}) and was deleted. The server sends other bytes than NIH's file (a broken mirror, "
        f"a proxy or an error page); try again later or another mirror (--base_url / --urls_file)."
    )
