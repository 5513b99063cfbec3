"""Real DICOM films (NEMA's test images, from the pydicom-data package): a CR chest PA stored MONOCHROME1 with 15
bits and a window, the same film in JPEG 2000 lossless and lossy, and a CR of an extremity.

Decoding is checked against the header itself (DICOM PS3.3 C.11.2.1.2's linear window, written out here, then
MONOCHROME1 inverted); prediction through the real CLI against a model trained on real pediatric films.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from cxr14.data.films.upload import read_film
from tests.conftest import run_cli

data_store = pytest.importorskip(
    "data_store", reason="NEMA's real DICOM films come from the pydicom-data package: pip install pydicom-data "
    "(the test extra; scripts/setup installs it)",
)  # fmt: skip
NEMA = Path(data_store.__file__).parent / "data"
CHEST = ("RG1_UNCR", "RG1_J2KR", "RG1_J2KI")
#: How far the lossy JPEG 2000 copy's probability may be from the uncompressed film's (measured: 4e-4).
LOSSY_TOLERANCE = 0.01


def window_by_the_standard(stored: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, linear function, onto 0..255: what a viewer shows of the stored values."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    y = ((stored - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.where(stored <= low, 0, np.where(stored > high, 255, y))


def test_monochrome1_and_its_window_as_the_header_says() -> None:
    import pydicom

    ds = pydicom.dcmread(NEMA / "RG1_UNCR.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 15
    assert "RescaleSlope" not in ds  # stored values are the modality values
    expected = 255 - window_by_the_standard(ds.pixel_array.astype(np.float64), float(ds.WindowCenter),
                                            float(ds.WindowWidth))  # MONOCHROME1: high values are dark  # fmt: skip
    gray = read_film(NEMA / "RG1_UNCR.dcm").astype(np.float64)
    assert gray.shape == (1955, 1841)
    assert np.abs(gray - expected).max() <= 1.0  # rounding to 8 bits
    assert np.abs(gray - (255 - expected)).mean() > 50  # and not shown the other way round


def test_lossless_jpeg2000_decodes_to_the_same_pixels() -> None:
    plain = read_film(NEMA / "RG1_UNCR.dcm")
    assert np.array_equal(read_film(NEMA / "RG1_J2KR.dcm"), plain)
    lossy = read_film(NEMA / "RG1_J2KI.dcm").astype(np.int16)
    assert 0 < np.abs(lossy - plain).mean() < 2  # lossy: close, not equal


@pytest.mark.slow
def test_predict_on_real_dicom(kermany_runs: list[Path]) -> None:
    """The lossless pair scores identically, the lossy copy within LOSSY_TOLERANCE; the extremity is flagged."""
    files = [str(NEMA / f"{name}.dcm") for name in (*CHEST, "RG3_UNCR")]
    done = run_cli("-m", "cxr14", "predict", "--checkpoint", str(kermany_runs[0] / "best_model.pth"), *files,
                   "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {Path(r["file"]).stem: r for r in csv.DictReader(io.StringIO(done.stdout))}
    p = {name: float(rows[name]["PNEUMONIA"]) for name in rows}
    assert p["RG1_J2KR"] == p["RG1_UNCR"]
    assert abs(p["RG1_J2KI"] - p["RG1_UNCR"]) < LOSSY_TOLERANCE
    assert rows["RG3_UNCR"]["unusual"] == "true" and rows["RG3_UNCR"]["findings"] == ""
    assert "unlike the films the model was trained on" in rows["RG3_UNCR"]["reason"]
