"""The NIH metadata that ships inside the package, and writing it into a data folder.

The six metadata files are small (2.2 MB gzipped) and CC0, so they come with cxr14: `cxr14 download`
writes them without a network, and the tests read them from the package instead of from files that
happen to sit beside a checkout. `cxr14/data/nih_download/files/files.csv` holds each file's sha256, which is checked on
every read, so a damaged install can never put wrong bytes into a data folder.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cxr14.errors import UserError
from cxr14.files import atomic_path

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedFile:
    """One metadata file: its name in a data folder, and the sha256 and size of its exact bytes."""

    name: str
    sha256: str
    nbytes: int


def resource(name: str) -> Traversable:
    """A file in the package's `nih` folder (works for wheels and editable installs alike)."""
    return resources.files("cxr14.data.nih_download").joinpath("files", name)


def packaged_files() -> list[PackagedFile]:
    """The metadata files that ship with cxr14, in the order `files.csv` lists them."""
    rows = csv.DictReader(io.StringIO(resource("files.csv").read_text()))
    return [PackagedFile(r["file"], r["sha256"], int(r["bytes"])) for r in rows]


def packaged_file(name: str) -> PackagedFile:
    """The table entry for one file name (e.g. 'Data_Entry_2017.csv')."""
    for entry in packaged_files():
        if entry.name == name:
            return entry
    raise KeyError(name)


def packaged_bytes(name: str) -> bytes:
    """The exact NIH bytes of a packaged metadata file, checked against its sha256."""
    entry = packaged_file(name)
    data = gzip.decompress(resource(f"{name}.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise UserError(
            f"The copy of {name} inside the installed cxr14 package is damaged (its sha256 is not the one in "
            f"cxr14/data/nih_download/files/files.csv). Reinstall cxr14 (`pip install --force-reinstall cxr14`, or "
            f"`bash scripts/setup` in a checkout)."
        )
    return data


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes; a `.gz` file is hashed uncompressed (what a reader sees)."""
    opener = gzip.open if path.suffix == ".gz" else open
    digest = hashlib.sha256()
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_metadata(data_dir: Path) -> dict[str, str]:
    """Write every packaged metadata file into `data_dir`, uncompressed; never overwrite a user's file.

    Returns {name: "written" | "present" | "kept"}: written now, already there with NIH's exact bytes,
    or there with other bytes (an edited or older copy), which is kept untouched and reported.
    """
    status = {}
    for entry in packaged_files():
        target = data_dir / entry.name
        if target.is_file():
            status[entry.name] = "present" if sha256_of(target) == entry.sha256 else "kept"
            continue
        data = packaged_bytes(entry.name)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        status[entry.name] = "written"
    kept = [n for n, s in status.items() if s == "kept"]
    if kept:
        log.warning(
            "kept your own %s in %s: not byte-identical to NIH's release (edited, or another copy); delete "
            "it and rerun to get NIH's",
            ", ".join(kept),
            data_dir,
        )
    written = [n for n, s in status.items() if s == "written"]
    log.info("metadata in %s: %s", data_dir, f"wrote {', '.join(written)}" if written else "already complete")
    return status
