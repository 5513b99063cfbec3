"""Pixel operations shared by every decoder: any PIL mode to 8-bit grey, a linear stretch, the one resize."""

from __future__ import annotations

import numpy as np
from PIL import Image

#: The one resize of the project (per-image path, cache build, cache read); named in cache fingerprints.
RESIZE_FILTER = "PIL bilinear antialiased"


#: PIL modes with more than 8 bits per sample: 16-bit PNGs open as I;16 (or I), float TIFFs as F.
HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def gray8(img: Image.Image) -> Image.Image:
    """Any decoded PIL image -> 8-bit grayscale ("L"): the one colour conversion of the project.

    8-bit modes (L, RGB, RGBA, P, CMYK...) go through PIL's own luminance conversion (alpha ignored: NIH's
    RGBA films are opaque). High-depth modes are stretched from their min..max to 0..255, because PIL's
    convert("L") clips them at 255 and a 12-bit film in a 16-bit PNG would come out white.
    """
    if img.mode == "L":
        return img
    if img.mode not in HIGH_DEPTH_MODES:
        return img.convert("L")
    return Image.fromarray(stretch8(np.asarray(img)), mode="L")


def stretch8(arr: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Map [lo, hi] (default: the array's own min..max) linearly onto uint8 0..255, clipping outside.

    A flat image (hi == lo) maps to 0 rather than dividing by zero.
    """
    a = np.asarray(arr, dtype=np.float64)
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    if not hi > lo:
        return np.zeros(a.shape, dtype=np.uint8)
    out = (a - lo) * (255.0 / (hi - lo))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def resize_gray(gray: Image.Image, size: int) -> Image.Image:
    """RESIZE_FILTER: PIL's bilinear filter with its support widened by the scale factor (antialiased).

    A 1024 -> 224 reduction then averages every source pixel instead of sampling 1 in 20.
    """
    return gray if gray.size == (size, size) else gray.resize((size, size), Image.Resampling.BILINEAR)

