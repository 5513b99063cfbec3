"""New films for `predict` and the web page: PNG, JPEG or DICOM, from a path or uploaded bytes.

Training reads NIH's PNGs with `images.read_gray`; a film from a user can be anything, so this reader
decides by content, refuses what it cannot read with one short line (FilmError) instead of a traceback,
and guards against decompression bombs before decoding: a 40-byte PNG can claim 10^10 pixels.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cxr14.data.films.decode import DICOM_SUFFIXES
from cxr14.data.films.dicom import one_line, read_dicom
from cxr14.data.films.pixels import gray8
from cxr14.errors import FilmError, UserError

#: Largest film accepted, in pixels per frame. Chest detectors reach ~6,000^2 (36 MP); 8192^2 leaves room
#: and stays under PIL's own bomb warning (89 MP), so the limit is ours and says so in its message.
MAX_PIXELS = 8192 * 8192
#: Suffixes listed from folders. Other files in a folder are listed only if they carry DICOM's marker
#: (PACS exports often name files by UID, "1.2.840.113619.2.55.3", or "IM0001", with no .dcm).
FILM_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
_PIL_FORMATS = ("PNG", "JPEG")
_MAGIC_AT, _MAGIC = 128, b"DICM"
_HEAD = 132


def is_dicom(head: bytes) -> bool:
    """True when the bytes carry the DICOM file marker: 'DICM' after the 128-byte preamble."""
    return head[_MAGIC_AT : _MAGIC_AT + 4] == _MAGIC


@dataclass(frozen=True)
class Film:
    """A decoded film: its 8-bit gray pixels, and how coloured the file was before the gray conversion."""

    pixels: np.ndarray  # uint8 (H, W)
    chroma: float = 0.0  # mean (max - min) of R, G, B per pixel on a thumbnail, 0..255; 0 for a gray file or DICOM


def read_film(source: Path | str | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The uint8 (H, W) gray pixels of one film (`open_film`), or FilmError with a one-line reason."""
    return open_film(source, max_pixels).pixels


def open_film(source: Path | str | bytes, max_pixels: int = MAX_PIXELS) -> Film:
    """Decode one film to uint8 (H, W) gray pixels and its colourfulness, or raise FilmError with a one-line reason.

    PNG (any mode: RGBA, palette, 16-bit scaled from its min..max) or JPEG, turned upright by its EXIF
    orientation, or DICOM. DICOM is recognised by
    its 'DICM' marker whatever the name, or by a .dcm/.dicom suffix for files without the marker; it is
    decoded by `dicom.read_dicom` (modality and VOI LUT or window, MONOCHROME1 inverted, first frame of a
    multi-frame object, colour to gray, 8 bits). Films over `max_pixels` are refused before decoding.
    """
    if isinstance(source, bytes):
        head, name = source[:_HEAD], None
        if not source:
            raise FilmError("empty file (0 bytes)", "empty")
    else:
        name = Path(source)
        head = _head(name)
    if is_dicom(head) or (name is not None and name.suffix.lower() in DICOM_SUFFIXES):
        return Film(read_dicom(io.BytesIO(source) if name is None else name, max_pixels, has_magic=is_dicom(head)))
    return _read_pil(io.BytesIO(source) if name is None else name, head, max_pixels)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            head = f.read(_HEAD)
    except IsADirectoryError as exc:
        raise FilmError("a folder, not an image file") from exc
    except OSError as exc:
        raise FilmError(f"cannot open the file ({exc.strerror or one_line(exc)})") from exc
    if not head:
        raise FilmError("empty file (0 bytes)", "empty")
    return head


def _read_pil(fp: Path | io.BytesIO, head: bytes, max_pixels: int) -> Film:
    """PNG or JPEG through PIL: header first (size check), then the full decode (truncation shows here)."""
    try:
        img = Image.open(fp, formats=_PIL_FORMATS)
    except Image.DecompressionBombError as exc:
        raise FilmError(f"image too large to decode safely ({one_line(exc)})", "too_large") from exc
    except Exception as exc:  # UnidentifiedImageError, or a header so damaged PIL trips over it
        raise FilmError(f"not a PNG, JPEG or DICOM image: {looks_like(head)}", "unsupported") from exc
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise FilmError(
                f"{img.format} of {w} x {h} pixels is over the {max_pixels / 1e6:.0f} MP limit "
                f"(a decompression bomb guard); no chest film is that large",
                "too_large",
            )
        try:
            img.load()
            upright = ImageOps.exif_transpose(img)  # phone photos of a film carry their rotation in EXIF
            gray = gray8(upright)
            chroma = _chroma(upright)
        except Exception as exc:  # truncated data, a bad CRC, a broken zlib stream, an odd mode...
            raise FilmError(f"truncated or damaged {img.format} file ({one_line(exc)})") from exc
        return Film(np.array(gray, dtype=np.uint8), chroma)


def _chroma(img: Image.Image) -> float:
    """How coloured an image is: the mean spread of R, G, B per pixel of a 64 px thumbnail (0 for gray files).

    A radiograph saved as RGB (NIH's 519 RGBA PNGs among them) has R = G = B everywhere; a photograph does not.
    """
    if img.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F", "1", "LA"):
        return 0.0
    thumb = img.convert("RGB")
    thumb.thumbnail((64, 64), Image.Resampling.NEAREST)
    rgb = np.asarray(thumb, dtype=np.int16)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean())


#: The cheap checks before the model (`unusual_film`): a film more coloured than this is a photograph ...
CHROMA_LIMIT = 20.0
#: ... one whose longer side is this many times its shorter is not a chest film's shape ...
ASPECT_LIMIT = 2.5
#: ... and one whose gray levels spread less than this (standard deviation, 0..255) is nearly blank.
FLAT_LIMIT = 4.0


def unusual_film(film: Film) -> str:
    """Why a film is plainly not a chest radiograph, in words ("" when nothing plain is wrong).

    Checks what is cheap and certain before the model sees the film: colour, shape and contrast. Whether it is
    upright is asked of the whole batch at once in the inference pass (`orientation`); whether a gray, upright,
    chest-shaped film looks like the training films is the model's gate's question (`model.gate`).
    """
    h, w = film.pixels.shape
    if film.chroma > CHROMA_LIMIT:
        return f"a colour photograph or picture (colour spread {film.chroma:.0f} of 255), not a radiograph"
    if max(h, w) > ASPECT_LIMIT * min(h, w):
        return f"a {w} x {h} picture (aspect ratio {max(h, w) / min(h, w):.1f}): not the shape of a chest film"
    thumb = film.pixels[:: max(1, h // 128), :: max(1, w // 128)]
    if float(thumb.std()) < FLAT_LIMIT:
        return f"a nearly blank image (gray levels spread {float(thumb.std()):.1f} of 255)"
    return ""


#: (offset, magic, what it is) for the files people upload by mistake.
_SIGNATURES = (
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive (or a Word/Excel file)"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"GIF8", "a GIF image (save it as PNG)"),
    (0, b"II*\x00", "a TIFF image (save it as PNG)"),
    (0, b"MM\x00*", "a TIFF image (save it as PNG)"),
    (0, b"BM", "a BMP image (save it as PNG)"),
    (8, b"WEBP", "a WebP image (save it as PNG)"),
    (4, b"ftypheic", "an HEIC photo (save it as JPEG or PNG)"),
    (4, b"ftypavif", "an AVIF image (save it as PNG)"),
    (0, b"\x93NUMPY", "a NumPy array file"),
    (0, b"\x89HDF", "an HDF5 file"),
)


def looks_like(head: bytes) -> str:
    """A few words on what the first bytes of a file that is not a film look like."""
    for offset, magic, what in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return f"it looks like {what}"
    if head.startswith(b"\x89PNG"):
        return "it starts like a PNG but its header is damaged"
    if head.startswith(b"\xff\xd8"):
        return "it starts like a JPEG but its header is damaged"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "it looks like a web page (HTML)"
    if text.startswith((b"<?xml", b"<svg")):
        return "it looks like XML or SVG"
    decoded = head.decode("utf-8", "replace")  # the cut at 132 bytes may split one character
    if decoded.count("\ufffd") <= 1 and all(c.isprintable() or c.isspace() for c in decoded):
        return "it looks like text"
    return "unrecognised binary data"


def list_films(paths: Iterable[Path | str]) -> list[Path]:
    """The films to read for `predict PATH...`: files as given, folders searched recursively.

    A file named on the command line is always listed (the reader decides and says why it cannot).
    In a folder: files with a FILM_SUFFIXES suffix (any case), plus any other file whose first bytes
    carry the DICOM marker; hidden files and DICOMDIR indexes are left out. Each folder's films come
    sorted by path, arguments in the order given, each path once. A path that does not exist is a
    UserError (a typo should not yield an empty, successful run).
    """
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.update(dict.fromkeys(_walk(path)))
        elif path.exists():
            found[path] = None
        else:
            raise UserError(f"{path} does not exist. Pass image files (PNG, JPEG, DICOM) or folders of them.")
    return list(found)


def _walk(folder: Path) -> list[Path]:
    films = []
    for root, dirs, files in os.walk(folder):  # does not follow symlinked folders: no loops
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            path = Path(root, name)
            if path.suffix.lower() in FILM_SUFFIXES or _has_dicom_marker(path):
                films.append(path)
    return sorted(films)


def _has_dicom_marker(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return is_dicom(f.read(_HEAD))
    except OSError:
        return False
