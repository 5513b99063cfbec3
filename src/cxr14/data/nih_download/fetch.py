"""Resumable HTTP downloads into a `.part` file, and the MD5 that says whether the bytes are right.

`requests` with a urllib3 `Retry` adapter handles connection set-up (connect/read timeouts, retries
with backoff, 429/5xx); this module handles what comes after the status line: a body that stops
half-way is continued from the byte it stopped at (HTTP Range), a server that ignores Range (200
instead of 206) restarts the file cleanly, and 416 means the `.part` already holds the whole file.
Bodies are read raw (no Content-Encoding decoding): the bytes on disk are the bytes NIH's MD5 is of.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import threading
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from cxr14 import __version__
from cxr14.errors import UserError

log = logging.getLogger(__name__)

#: Bytes per read: urllib3 blocks until it has them all, so this bounds how late Ctrl-C is noticed.
CHUNK = 1 << 16
#: Attempts in a row that add no byte before a file is given up (each waits longer: 1, 3, 7, 15, 30 s).
MAX_STALLS = 5
#: What a dropped connection, a timeout or a truncated body looks like, from any layer.
NET_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class Stopped(Exception):
    """The user interrupted the download: leave the `.part` as it is for the next run."""


class Progress:
    """One progress bar (bytes, rate, ETA) shared by every download thread."""

    def __init__(self, expected: dict[str, int], initial: int, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._expected = dict(expected)  # label -> bytes the bar counts for it
        total = sum(expected.values())
        self._bar = tqdm(
            total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc="download",
            disable=not enabled, dynamic_ncols=True,
        )  # fmt: skip

    def add(self, n: int) -> None:
        """Count bytes written (negative when a file restarts or is thrown away)."""
        with self._lock:
            self._bar.update(n)

    def expect(self, label: str, nbytes: int | None) -> None:
        """The server said how big a file really is: correct the bar's total."""
        if nbytes is None:
            return
        with self._lock:
            delta = nbytes - self._expected.get(label, 0)
            self._expected[label] = nbytes
            if delta:
                self._bar.total += delta
                self._bar.refresh()

    def note(self, text: str) -> None:
        with self._lock:
            self._bar.set_postfix_str(text)

    def close(self) -> None:
        self._bar.close()


def make_session(retries: int = 3) -> requests.Session:
    """A session that retries connection set-up and 429/5xx answers with backoff (0, 2, 4 s)."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=1.0,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"cxr14/{__version__}"
    return session


def fetch(
    session: requests.Session,
    url: str,
    part: Path,
    progress: Progress,
    stop: threading.Event,
    timeout: float,
) -> None:
    """Download `url` into `part`, continuing what `part` already holds; return when the body is whole.

    A failure after which the file is longer than ever before is followed by an immediate resume;
    MAX_STALLS failures in a row that do not get further give up with a UserError (so a server that
    drops every connection and ignores Range cannot keep us busy forever). `stop` (Ctrl-C) raises
    Stopped between chunks.
    """
    stalls, furthest = 0, part.stat().st_size if part.exists() else 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        try:
            if _get_once(session, url, part, have, progress, stop, timeout):
                return
            reason = "the connection closed before the end of the file"
        except NET_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}"
        size = part.stat().st_size if part.exists() else 0
        stalls = 0 if size > furthest else stalls + 1
        furthest = max(furthest, size)
        if stalls > MAX_STALLS:
            raise UserError(
                f"Downloading {part.name.removesuffix('.part')} from {url} failed {stalls} times in a row without "
                f"progress (last: {reason}). The {size:,} bytes received so far are kept in {part}: run the "
                f"same command again later to continue, or use a mirror (--base_url / --urls_file)."
            )
        delay = min(30.0, 2.0**stalls - 1)
        log.info("%s: %s; continuing at byte %s in %.0f s", part.name, reason, f"{size:,}", delay)
        if stop.wait(delay):
            raise Stopped


def _get_once(
    session: requests.Session,
    url: str,
    part: Path,
    have: int,
    progress: Progress,
    stop: threading.Event,
    timeout: float,
) -> bool:
    """One GET from byte `have`; True when `part` then holds the whole body."""
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    label = part.name
    with session.get(url, headers=headers, stream=True, timeout=(min(timeout, 10.0), timeout)) as response:
        if response.status_code == 416 and have:
            return True  # nothing after byte `have`: the part holds the whole file (the MD5 says if right)
        _raise_for_status(response, url)
        start, total = _body_span(response)
        if start != have:
            if have:
                log.info("%s: the server did not resume at byte %s (HTTP %d): starting the file again",
                         label, f"{have:,}", response.status_code)  # fmt: skip
            progress.add(-have)
            if start != 0:  # a range nobody asked for: start over with a plain GET
                part.unlink(missing_ok=True)
                return False
        progress.expect(label, total)
        with open(part, "ab" if start else "wb") as f:
            for chunk in response.raw.stream(CHUNK, decode_content=False):
                if stop.is_set():
                    raise Stopped
                f.write(chunk)
                progress.add(len(chunk))
    return total is None or part.stat().st_size >= total


def _body_span(response: requests.Response) -> tuple[int, int | None]:
    """(first byte of this body within the file, size of the whole file or None if not said)."""
    if response.status_code == 206:
        # Content-Range: bytes 1000-4999/5000 (or /* when the size is unknown)
        spec = response.headers.get("Content-Range", "")
        try:
            span, _, size = spec.removeprefix("bytes ").partition("/")
            return int(span.split("-")[0]), None if size.strip() == "*" else int(size)
        except ValueError:
            return -1, None  # unparseable: treated as a range we did not ask for
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _raise_for_status(response: requests.Response, url: str) -> None:
    if response.status_code < 400:
        return
    hint = "check the URL (--base_url / --urls_file)" if response.status_code in (403, 404, 410) else "try again later"
    raise UserError(f"{url} answered HTTP {response.status_code} {response.reason}: {hint}.")


def md5_of(path: Path, stop: threading.Event | None = None) -> str:
    """MD5 of a file, read in blocks (archives are 2-4 GiB); `stop` interrupts it."""
    digest = hashlib.md5(usedforsecurity=False)  # NIH publishes MD5s; this checks integrity, not authenticity
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            if stop is not None and stop.is_set():
                raise Stopped
            digest.update(block)
    return digest.hexdigest()
