"""The node's spool: every film received is on disk before it is acknowledged, and stays there until its results
are delivered, so neither a kill nor a power cut loses one.

    SPOOL/incoming/T-UID.dcm         received, acknowledged, not yet scored (T: arrival time in ns: the order)
    SPOOL/outgoing/T-UID/*.dcm       its result objects, scored, not yet all delivered (each deleted once sent)
    SPOOL/dead/T-UID[.dcm]/ + .why   what can never succeed (an unreadable film, a result the PACS refused)

Every move is a write to a temporary name, fsync, rename, fsync of the folder (`files.atomic_path`, durable):
a file under a final name is complete, and a name starting with "." is not. A crash between two steps leaves a
state that the next start finishes: a film whose results are already in outgoing/ is simply dropped from
incoming/; one scored again writes the same objects (their UIDs are derived from the film and the model), so a
PACS that already holds them keeps one copy. The disk is the queue: memory holds
only the batch being worked on (`oldest` reads names without keeping the listing).
"""

from __future__ import annotations

import heapq
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from cxr14.files import atomic_path, fsync_dir

log = logging.getLogger(__name__)
#: A DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters. Anything else received is named by a hash.
UID = re.compile(r"[0-9][0-9.]{0,63}")
#: The lock file the node holds for as long as it runs: one node per spool.
LOCK = ".lock"
#: Names of what is still being written (`files.atomic_path`'s temporary files, a result folder being filled).
TEMP = "."


def write_durably(path: Path, data: bytes) -> None:
    """`data` at `path`, complete or not at all, and on the disk when this returns."""
    with atomic_path(path, durable=True) as tmp:
        tmp.write_bytes(data)


def key_for(sop_instance_uid: str) -> str:
    """A spool name for a received instance: arrival order first, then its UID (or a hash of a malformed one)."""
    uid = sop_instance_uid or ""
    if not UID.fullmatch(uid):  # a name from the network must not become a path
        uid = f"x{uuid.uuid5(uuid.NAMESPACE_OID, uid).hex}"
    return f"{time.time_ns():020d}-{uid}"


class Spool:
    """The three folders and the moves between them; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming, self.outgoing, self.dead = root / "incoming", root / "outgoing", root / "dead"
        for folder in (self.incoming, self.outgoing, self.dead):
            folder.mkdir(parents=True, exist_ok=True)

    def recover(self) -> None:
        """Finish what a crash interrupted: drop half-written files, and films whose results are already out.

        Only for the spool's one owner (the node, holding LOCK), before it starts: in a spool being written,
        the half-written files are another thread's work in progress. Opening a Spool only to look (counts)
        changes nothing."""
        for folder in (self.incoming, self.outgoing):
            for entry in folder.iterdir():
                if entry.name.startswith(TEMP):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                elif entry.is_dir():
                    for part in entry.glob(f"{TEMP}*"):
                        part.unlink()
        for film in self.incoming.glob("*.dcm"):
            if (self.outgoing / film.stem).is_dir():
                film.unlink()
        fsync_dir(self.incoming)

    def receive(self, sop_instance_uid: str, encoded: bytes) -> Path:
        """Store one received instance (a whole DICOM file) durably; the caller acknowledges it only after this."""
        path = self.incoming / f"{key_for(sop_instance_uid)}.dcm"
        write_durably(path, encoded)
        return path

    def films(self, limit: int) -> list[Path]:
        """The `limit` oldest films waiting to be scored."""
        return [self.incoming / n for n in oldest(self.incoming, limit, suffix=".dcm")]

    def results(self, limit: int) -> list[Path]:
        """The `limit` oldest films' result folders waiting to be delivered."""
        return [self.outgoing / n for n in oldest(self.outgoing, limit)]

    def scored(self, film: Path, objects: Iterable[tuple[str, bytes]]) -> Path:
        """Move a film to outgoing/ as its result objects (name, encoded file); the film itself is deleted."""
        final = self.outgoing / film.stem
        tmp = self.outgoing / f"{TEMP}{film.stem}"
        tmp.mkdir(exist_ok=True)
        for name, data in objects:
            write_durably(tmp / name, data)
        if final.exists():  # scored before a crash, rescored now: the same objects, keep the first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
        fsync_dir(self.outgoing)
        self.discard(film)
        return final

    def delivered(self, result: Path) -> None:
        """One result object sent (deleted); its film's folder goes when its last object has."""
        result.unlink()
        folder = result.parent
        if not any(folder.iterdir()):
            folder.rmdir()
            fsync_dir(self.outgoing)

    def discard(self, film: Path) -> None:
        """A film that needs nothing more (scored, or skipped)."""
        film.unlink(missing_ok=True)
        fsync_dir(film.parent)

    def bury(self, entry: Path, reason: str) -> Path:
        """Move a film, or one result object, to dead/ with `reason` beside it (NAME.why): never retried."""
        name = entry.name if entry.parent == self.incoming else f"{entry.parent.name}-{entry.name}"
        target = self.dead / name
        write_durably(self.dead / f"{name}.why", (reason.rstrip() + "\n").encode())
        os.replace(entry, target)
        fsync_dir(self.dead)
        if entry.parent == self.incoming:
            fsync_dir(self.incoming)
        elif not any(entry.parent.iterdir()):
            entry.parent.rmdir()
            fsync_dir(self.outgoing)
        return target

    def counts(self) -> dict[str, int]:
        """How many films wait in each stage (for logs and tests)."""
        return {
            "incoming": sum(1 for _ in self.incoming.glob("*.dcm")),
            "outgoing": sum(1 for p in self.outgoing.iterdir() if p.is_dir() and not p.name.startswith(TEMP)),
            "dead": sum(1 for _ in self.dead.glob("*.why")),
        }


def oldest(folder: Path, limit: int, suffix: str = "") -> list[str]:
    """The `limit` smallest complete names in `folder` (names start with the arrival time), in O(limit) memory."""
    with os.scandir(folder) as entries:
        names = (e.name for e in entries if not e.name.startswith(TEMP) and e.name.endswith(suffix))
        return heapq.nsmallest(limit, names)
