"""Finding NIH's images, and decoding dataset images: one decode path shared by training, the cache and checks.

NIH ships 8-bit grayscale PNGs, but 519 of them are RGBA; every image is read as 8-bit
grayscale ("L") whatever its mode, so the model never sees a 4-channel or 16-bit surprise.
Films from users (PNG, JPEG, DICOM, with checks and one-line reasons) go through `films.read_film`,
which shares `gray8` and `stretch8` with this module.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxr14.errors import UserError

#: The one resize of the project (per-image path, cache build, cache read); named in cache fingerprints.
RESIZE_FILTER = "PIL bilinear antialiased"

#: Errors that mean "this file is not a readable image" (truncated, corrupt, not a PNG).
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


def image_dirs(data_dir: Path) -> list[Path]:
    """The folders that hold images, for both layouts users have.

    NIH Box tarballs unpack to `images/`; Kaggle has `images_001/images/` .. `images_012/images/`.
    """
    dirs = []
    if (data_dir / "images").is_dir():
        dirs.append(data_dir / "images")
    dirs += sorted(p for p in data_dir.glob("images_*/images") if p.is_dir())
    return dirs


def index_images(data_dir: Path) -> dict[str, Path]:
    """Map file name -> path for every PNG under the known layouts (one scandir per folder)."""
    found: dict[str, Path] = {}
    for folder in image_dirs(data_dir):
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.endswith(".png"):
                    found.setdefault(entry.name, Path(entry.path))
    return found


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
        from cxr14.data.dicom import read_dicom  # here: pydicom is loaded only for datasets of DICOM files

        gray = Image.fromarray(read_dicom(Path(path), MAX_PIXELS))
        return np.array(resize_gray(gray, size) if size is not None else gray, dtype=np.uint8)
    with Image.open(path) as img:
        img.load()  # force the full decode here, so truncation raises here
        gray = gray8(img)
        if size is not None:
            gray = resize_gray(gray, size)
        return np.array(gray, dtype=np.uint8)  # a writable copy: torch.from_numpy wants one


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


def describe_missing(missing: list[str], data_dir: Path, shown: int = 5) -> str:
    """One paragraph for a UserError about images named in the CSV but absent on disk."""
    first = ", ".join(missing[:shown])
    return (
        f"{len(missing)} image(s) named in the metadata are not under {data_dir} "
        f"(looked in images/ and images_*/images/), e.g. {first}. `cxr14 download --data_dir {data_dir}` "
        f"fetches and unpacks the archives that hold them (it resumes, and skips what is there), and "
        f"`cxr14 download --check --data_dir {data_dir}` reports what the folder lacks; or pass "
        f"--on_bad_image skip to go on with the images that are present (the missing ones are counted)."
    )


def check_data_dir(data_dir: Path) -> None:
    """Fail early, with a paragraph, when the data folder itself is missing."""
    if not data_dir.is_dir():
        raise UserError(
            f"Data folder {data_dir} does not exist. Pass --data_dir pointing at the folder that holds "
            f"Data_Entry_2017.csv and images/ (or the Kaggle images_001..012 folders); `cxr14 phantom --out "
            f"DIR` makes a small synthetic one to try things with."
        )
