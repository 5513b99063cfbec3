"""Unpacking an image archive safely: regular files under `images/` only, nothing outside the data folder.

An archive from a mirror is untrusted until proven otherwise, and even a right MD5 only proves it is
the file someone listed. NIH's archives hold `images/NAME.png` members and nothing else, so every
member is checked before it is written: absolute names, `..`, links, devices and files anywhere but
directly in `images/` stop the unpacking with the archive's and the member's names. tarfile's `data`
filter (Python 3.10.12+/3.11.4+) then guards the write itself as a second line.

Members go to a temporary folder inside the data folder first; only once the whole archive has been
read are they renamed (same disk, atomic) into `images/`. An interruption or a refusal therefore
never leaves a half-written PNG in `images/` that looks complete.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
import zlib
from pathlib import Path, PurePosixPath

from cxr14.data.nih_download.fetch import Stopped
from cxr14.errors import UserError

#: tarfile's own guard where this Python has it (3.10.12+, 3.11.4+, 3.12+).
_FILTER: dict = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_FILTER_ERRORS: tuple = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


def unpack(archive: Path, data_dir: Path, stop: threading.Event | None = None) -> list[str]:
    """Extract `archive` into `data_dir/images`; return the sorted names of the images placed there."""
    staging = data_dir / f".cxr14-unpack-{archive.name.split('.')[0]}"
    shutil.rmtree(staging, ignore_errors=True)  # left over by an interrupted run
    staging.mkdir(parents=True)
    try:
        names = _extract_checked(archive, staging, data_dir, stop)
        images = data_dir / "images"
        images.mkdir(exist_ok=True)
        for name in names:
            os.replace(staging / "images" / name, images / name)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_checked(archive: Path, staging: Path, data_dir: Path, stop: threading.Event | None) -> list[str]:
    names: set[str] = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if stop is not None and stop.is_set():
                    raise Stopped
                problem = member_problem(member)
                if problem:
                    raise _refusal(archive, member.name, problem, data_dir)
                if member.isreg():
                    tar.extract(member, staging, **_FILTER)
                    names.add(PurePosixPath(member.name).name)
    except _FILTER_ERRORS as exc:
        raise _refusal(archive, exc.tarinfo.name, str(exc), data_dir) from exc
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise _damaged(archive, exc) from exc
    return sorted(names)


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a member may not be unpacked, or None when it is `images/NAME` (a regular file) or `images/`."""
    path = PurePosixPath(member.name)
    parts = [p for p in path.parts if p != "."]
    if path.is_absolute() or member.name.startswith(("/", "\\")):
        return "has an absolute path"
    if ".." in parts:
        return "points outside the folder it is unpacked into (..)"
    if member.issym() or member.islnk():
        return f"is a link (to {member.linkname!r})"
    if member.isdev():
        return "is a device or a pipe"
    if member.isdir():
        return None if parts == ["images"] else "is a folder other than images/"
    if not member.isreg():
        return "is not a regular file"
    if len(parts) != 2 or parts[0] != "images":
        return "is not a file directly inside images/"
    return None


def _refusal(archive: Path, member: str | None, problem: str, data_dir: Path) -> UserError:
    return UserError(
        f"Refusing to unpack {archive.name}: its member {member!r} {problem}. NIH's archives hold only "
        f"images/NAME.png files, so this archive is not NIH's or was altered; nothing from it was put into "
        f"{data_dir / 'images'}. It is left at {archive} for inspection: delete it, and check the mirror it "
        f"came from (--base_url / --urls_file)."
    )


def _damaged(archive: Path, exc: BaseException) -> UserError:
    return UserError(
        f"Cannot unpack {archive} ({type(exc).__name__}: {exc}): the archive is damaged although its MD5 "
        f"matched the table. Delete it and run the same command again; if it happens again, the MD5 in the "
        f"--urls_file is not that of NIH's file."
    )
