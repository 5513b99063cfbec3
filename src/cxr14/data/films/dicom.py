"""DICOM films -> 8-bit grayscale, as a radiologist's viewer would show them.

The order is the standard's (PS3.3 C.11): stored values -> Modality LUT (rescale slope/intercept, e.g.
to Hounsfield units) -> VOI LUT (the VOI LUT Sequence, else the Window Center/Width the modality chose)
-> Presentation (MONOCHROME1 means high values are dark, so it is inverted last). The 12- or 16-bit
result is then stretched to 8 bits over the windowed range when there is a window, over the image's own
min..max when there is none. Colour films (RGB, YBR, PALETTE COLOR) become gray by luminance.

Only the first frame of a multi-frame object is decoded: a chest film is one frame, and a cine loop or
tomosynthesis stack sent by mistake should cost one frame's memory, not all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from cxr14.data.films.pixels import stretch8
from cxr14.errors import FilmError

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: What adds the decoders pydicom lacks out of the box (JPEG Lossless, 12-bit JPEG, JPEG-LS, some JPEG 2000).
DECODER_FIX = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pyjpegls (or python-gdcm)"


def one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's first line, shortened: library messages can run to paragraphs."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_dicom(source: Path | BinaryIO, max_pixels: int, has_magic: bool = True) -> np.ndarray:
    """Decode the first frame of a DICOM file to uint8 (H, W) gray, or raise FilmError with one line.

    has_magic: the file carries the 'DICM' marker at byte 128. Without it (old ACR-NEMA style files
    named .dcm) pydicom is asked to read it anyway, and a failure says it may not be DICOM at all.
    """
    import pydicom  # here, not at import: pydicom costs a fraction of a second that PNG users need not pay
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(source, force=not has_magic)
    except (InvalidDicomError, EOFError) as exc:
        raise FilmError(f"not a readable DICOM file ({one_line(exc)})", "unsupported") from exc
    except Exception as exc:  # any parser failure on a damaged file is the same to the user
        raise FilmError(f"damaged DICOM file ({type(exc).__name__}: {one_line(exc)})") from exc
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        kind = _sop_class(ds)
        if not has_magic and kind is None:
            raise FilmError("not a DICOM image: no 'DICM' marker and no pixel data", "unsupported")
        what = kind or "unknown object type"
        raise FilmError(f"DICOM file without pixel data ({what}): nothing to show", "no_pixels")
    _check_size(ds, max_pixels)
    frame = _first_frame(ds)
    return _to_gray8(frame, ds)


def _sop_class(ds) -> str | None:
    uid = ds.get("SOPClassUID")
    return getattr(uid, "name", None) or (str(uid) if uid else None)


def _check_size(ds, max_pixels: int) -> None:
    """Refuse a frame larger than max_pixels before any pixel is decoded (a decompression bomb guard)."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise FilmError("DICOM pixel data without valid Rows/Columns: the header is damaged") from exc
    if rows <= 0 or cols <= 0:
        raise FilmError(f"DICOM image of {cols} x {rows} pixels: the header is damaged")
    if rows * cols > max_pixels:
        raise FilmError(
            f"DICOM image of {cols} x {rows} pixels is over the {max_pixels / 1e6:.0f} MP limit "
            f"(a decompression bomb guard); no chest film is that large",
            "too_large",
        )


def _first_frame(ds) -> np.ndarray:
    """Frame 0 as pydicom decodes it (YBR already converted to RGB), or a FilmError saying why not."""
    from pydicom.pixels import pixel_array
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = ds.file_meta if hasattr(ds, "file_meta") else None
    if meta is None or "TransferSyntaxUID" not in meta:
        # Files without a meta header: pydicom read them with the encoding it guessed; decode with the same.
        implicit, little = ds.original_encoding
        guessed = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        ds.ensure_file_meta()
        ds.file_meta.TransferSyntaxUID = guessed
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    try:
        return pixel_array(ds, index=0)
    except RuntimeError as exc:  # pydicom's "no plugin could decode" family
        if syntax.is_compressed:
            reason = "its decoder is not installed" if "missing dependencies" in str(exc) else _plugin_reason(exc)
            raise FilmError(
                f"DICOM pixel data compressed as '{syntax.name}' cannot be decoded here ({reason}); {DECODER_FIX}",
                "unsupported",
            ) from exc
        raise FilmError(f"damaged DICOM pixel data ({one_line(exc)})") from exc
    except ValueError as exc:
        if "less than expected" in str(exc):
            raise FilmError("truncated DICOM file: less pixel data than Rows x Columns needs") from exc
        raise FilmError(f"damaged DICOM pixel data ({one_line(exc)})") from exc
    except Exception as exc:  # damaged headers surface as many types (AttributeError, KeyError, struct.error...)
        raise FilmError(f"damaged DICOM pixel data ({type(exc).__name__}: {one_line(exc)})") from exc


def _plugin_reason(exc: RuntimeError) -> str:
    """The first plugin's complaint from pydicom's multi-line 'all plugins failed' message."""
    lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
    return (lines[0] if lines else one_line(exc))[:120]


def _to_gray8(frame: np.ndarray, ds) -> np.ndarray:
    """Modality LUT -> VOI LUT or window -> 8 bits -> MONOCHROME1 inverted; colour -> luminance."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        if photometric == "PALETTE COLOR":
            frame = apply_color_lut(frame, ds)
        if frame.ndim == 3:  # RGB (pydicom already turned YBR into RGB): ITU-R 601 luminance, as PIL's "L"
            return stretch8(frame[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
        values = apply_modality_lut(frame, ds)
    except Exception as exc:  # a LUT that does not fit the pixels: damaged header
        raise FilmError(f"damaged DICOM colour or modality table ({one_line(exc)})") from exc
    shown, lo, hi = _voi(values, ds)
    gray = stretch8(shown, lo, hi)
    return 255 - gray if photometric == "MONOCHROME1" else gray


def _voi(values: np.ndarray, ds) -> tuple[np.ndarray, float | None, float | None]:
    """Apply the VOI LUT or window; return the values and the range to stretch (None: their min..max).

    A window maps onto a fixed output range (pydicom's y_min..y_max): stretching that range, not the
    pixels' own extremes, keeps the contrast the modality chose even when no pixel reaches either end.
    A window pydicom refuses (width < 1) is ignored: the full range is still a readable film.
    """
    from pydicom.pixels import apply_voi_lut

    try:
        shown = apply_voi_lut(values, ds, index=0)
    except Exception:  # a damaged VOI module: fall back to the full range rather than refuse the film
        return values, None, None
    if shown is values or shown.dtype != np.float64:  # no VOI, or a VOI LUT Sequence (integer output)
        return shown, None, None
    with np.errstate(over="ignore"):  # the SIGMOID function overflows exp() on the probe, harmlessly
        lo, hi = apply_voi_lut(np.array([-1e300, 1e300]), ds, index=0)
    return shown, float(lo), float(hi)
