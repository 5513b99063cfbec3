"""Atomic file writes (what a user made is either the old file or the new one, never half of one), and
the lock that keeps two processes from writing the same folder at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from cxr14.errors import UserError


@contextlib.contextmanager
def atomic_path(path: Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on failure delete it.

    durable: also fsync the file before the rename and the folder after it, so that `path` is on the disk when
    this returns (the DICOM node acknowledges a film only then); an ordinary write leaves that to the system.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path)
    try:
        yield Path(tmp)
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable (the entry lives in the folder, not in the file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_temp(path: Path) -> Path:
    """A new empty file beside `path` with the mode any new file gets (0666 less the umask).

    tempfile.mkstemp would create it 0600, and the renamed result (a checkpoint, NIH's CSVs in a shared
    data folder) would then be unreadable to everyone but its owner.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # 48 random bits: practically never
            continue


def write_text(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def exclusive(lock_file: Path, busy: str) -> Iterator[None]:
    """Hold an flock on `lock_file` for the block; if another process holds it, UserError(`busy`).

    The OS releases an flock when its process dies, so a crash never leaves a stale lock behind.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UserError(busy) from exc
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
