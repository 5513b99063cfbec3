"""NIH's 12 image archives: the packaged table, a mirror's URLs, `--only`, and which images each holds.

The table (number, URL, image count, bytes, MD5) lives once, in `cxr14/nih/archives.csv`. A mirror
changes only the URLs: the MD5s still decide whether a file is NIH's. Each archive holds a contiguous
range of the sorted image names (4,999 in the first, then 10,000 each, 7,121 in the last), so the
packaged CSV says which archive a missing image comes from.
"""

from __future__ import annotations

import bisect
import csv
import io
import re
from dataclasses import dataclass, replace
from pathlib import Path

from cxr14.config.commands import URLS_FILE_HELP
from cxr14.data.nih_download.packaged import packaged_bytes, resource
from cxr14.errors import UserError

NUMBERS = range(1, 13)


@dataclass(frozen=True)
class Archive:
    """One `images_NN.tar.gz`: where to get it, what it holds, and the MD5 that proves it is right."""

    number: int
    url: str
    images: int
    nbytes: int  # expected size; an estimate for disk space and progress (the MD5 decides)
    md5: str

    @property
    def filename(self) -> str:
        """The name NIH's own download script gives it."""
        return f"images_{self.number:02d}.tar.gz"


def nih_archives() -> list[Archive]:
    """NIH's 12 archives on Box, from the packaged table."""
    rows = csv.DictReader(io.StringIO(resource("archives.csv").read_text()))
    return [Archive(int(r["number"]), r["url"], int(r["images"]), int(r["bytes"]), r["md5"]) for r in rows]


def with_base_url(archives: list[Archive], base_url: str) -> list[Archive]:
    """The same archives from a mirror folder that holds images_01.tar.gz .. images_12.tar.gz."""
    _check_url(base_url, "--base_url")
    return [replace(a, url=f"{base_url.rstrip('/')}/{a.filename}") for a in archives]


def read_urls_file(path: Path) -> list[Archive]:
    """Archives listed in a `--urls_file` (format: URLS_FILE_HELP); NIH's values fill empty cells."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"Cannot read the --urls_file {path}: {exc}.") from exc
    if not rows or not {"number", "url"} <= set(rows[0]):
        raise UserError(f"--urls_file {path} has no rows under a header with number and url. Format: {URLS_FILE_HELP}")
    nih = {a.number: a for a in nih_archives()}
    out: dict[int, Archive] = {}
    for i, row in enumerate(rows, start=2):
        try:
            number = int(row["number"])
            default = nih[number]
            md5 = (row.get("md5") or default.md5).strip().lower()
            archive = Archive(
                number,
                (row["url"] or "").strip(),
                int(row.get("images") or default.images),
                int(row.get("bytes") or default.nbytes),
                md5,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"--urls_file {path}, line {i}: {exc!r} is not valid. Format: {URLS_FILE_HELP}") from exc
        _check_url(archive.url, f"--urls_file {path}, line {i}")
        if not re.fullmatch(r"[0-9a-f]{32}", md5):
            raise UserError(f"--urls_file {path}, line {i}: md5 {md5!r} is not 32 hex digits.")
        if number in out:
            raise UserError(f"--urls_file {path} lists archive {number} twice (lines up to {i}).")
        out[number] = archive
    return [out[n] for n in sorted(out)]


def _check_url(url: str, where: str) -> None:
    if not re.match(r"https?://[^/\s]+", url):
        raise UserError(f"{where}: {url!r} is not an http:// or https:// URL.")


def parse_only(text: str) -> tuple[int, ...]:
    """`--only 1,2` or `--only 3-5,12`: archive numbers, each 1..12."""
    numbers: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, -1)
        if not match or low > high or low not in NUMBERS or high not in NUMBERS:
            raise UserError(
                f"--only {text!r}: {part!r} is not an archive number or range between 1 and 12 (e.g. --only 1 "
                f"for the first 4,999 images, --only 1,2 or --only 3-12)."
            )
        numbers.update(range(low, high + 1))
    if not numbers:
        raise UserError(f"--only {text!r} names no archive; give numbers 1..12, e.g. --only 1,2.")
    return tuple(sorted(numbers))


def select(archives: list[Archive], only: tuple[int, ...] | None) -> list[Archive]:
    """The archives `--only` asks for (all when None); asking for one the table lacks is an error."""
    if only is None:
        return archives
    have = {a.number for a in archives}
    absent = [n for n in only if n not in have]
    if absent:
        raise UserError(
            f"--only asks for archive(s) {', '.join(map(str, absent))}, which the --urls_file does not list "
            f"(it lists {', '.join(map(str, sorted(have)))})."
        )
    return [a for a in archives if a.number in only]


def nih_names() -> list[str]:
    """Every image name of the release, sorted (from the packaged 2017 CSV)."""
    lines = packaged_bytes("Data_Entry_2017.csv").decode().splitlines()[1:]
    return sorted(line.split(",", 1)[0] for line in lines if line)


def nih_contents() -> dict[int, list[str]]:
    """Archive number -> the image names it holds (consecutive runs of the sorted names)."""
    names, out, start = nih_names(), {}, 0
    for archive in nih_archives():
        out[archive.number] = names[start : start + archive.images]
        start += archive.images
    return out


def archives_holding(names: list[str]) -> list[int]:
    """The numbers of NIH's archives that hold any of `names` (names not in the release are ignored)."""
    contents = nih_contents()
    firsts = [contents[n][0] for n in NUMBERS]
    known = set().union(*contents.values())
    return sorted({bisect.bisect_right(firsts, name) for name in names if name in known})


def describe_numbers(numbers: list[int]) -> str:
    """[2, 3, 4, 7] -> '2-4,7': the form `--only` takes."""
    parts, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ",".join(parts)
