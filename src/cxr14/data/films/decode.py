"""Decoding dataset images: one decode path shared by training, the cache and checks.

NIH ships 8-bit grayscale PNGs, but 519 of them are RGBA; every image is read as 8-bit
grayscale ("L") whatever its mode, so the model never sees a 4-channel or 16-bit surprise.
Films from users (PNG, JPEG, DICOM, with checks and one-line reasons) go through `films.read_film`,
which shares `gray8` and `stretch8` with this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxr14.data.films.pixels import gray8, resize_gray

#: Errors that mean "this file is not a readable image" (truncated, corrupt, not a PNG).
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


#: Dataset images that are DICOM (VinDr-CXR ships .dicom files): read by `dicom.read_dicom`, all else by PIL.
DICOM_SUFFIXES = (".dcm", ".dicom")
#: The largest dataset image decoded (as for films: a decompression-bomb guard).
MAX_PIXELS = 8192 * 8192


def read_gray(path: Path | str, size: int | None = None) -> np.ndarray:
    """Decode a dataset image (PNG of any depth, JPEG, or DICOM) to a uint8 (H, W) array, optionally resized to
    (size, size).

    The resize is `resize_gray`, the same one the cache uses. DICOM goes through the films' DICOM reader (its
    VOI LUT or window, MONOCHROME1 inverted). Raises one of DECODE_ERRORS for a corrupt or truncated file.
    """
    if str(path).lower().endswith(DICOM_SUFFIXES):
        from cxr14.data.films.dicom import read_dicom  # here: pydicom is loaded only for datasets of DICOM files

        gray = Image.fromarray(read_dicom(Path(path), MAX_PIXELS))
        return np.array(resize_gray(gray, size) if size is not None else gray, dtype=np.uint8)
    with Image.open(path) as img:
        img.load()  # force the full decode here, so truncation raises here
        gray = gray8(img)
        if size is not None:
            gray = resize_gray(gray, size)
        return np.array(gray, dtype=np.uint8)  # a writable copy: torch.from_numpy wants one


