"""`cxr14 predict` on new films: PNG, JPEG, DICOM (incl. MONOCHROME1), bad files skipped, CAM overlays."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from cxr14.cli import main
from cxr14.labels import NIH_LABELS

pytestmark = pytest.mark.slow


def predict(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["predict", "--no-progress", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def monochrome1(pixels: np.ndarray, path: Path) -> None:
    """The film as a 12-bit MONOCHROME1 DICOM (white = 0), windowed over the whole stored range."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "CR", *pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = ((255 - pixels.astype(np.uint16)) * 16).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def films(phantom_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six phantom test films as PNG, one as JPEG, one as MONOCHROME1 DICOM, pydicom's CT, and two bad files."""
    _, data = phantom_run
    folder = tmp_path_factory.mktemp("films")
    names = (data / "test_list.txt").read_text().split()[:6]
    for name in names:
        shutil.copy(data / "images" / name, folder / name)
    first = np.array(Image.open(folder / names[0]).convert("L"))
    Image.fromarray(first).save(folder / "first.jpg", quality=95)
    (folder / "sub").mkdir()  # folders are searched recursively
    monochrome1(first, folder / "sub" / "first_mono1.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    (folder / "notes.png").write_text("not an image")
    (folder / "empty.dcm").write_bytes(b"")
    return folder


def test_folder_rows_skips_and_the_same_numbers_as_evaluation(films: Path, phantom_run, tmp_path, capsys) -> None:
    run, _ = phantom_run
    code, out, err = predict(capsys, str(films), "--checkpoint", str(run / "best_model.pth"))
    assert code == 0
    rows = pd.read_csv(io.StringIO(out))
    assert list(rows.columns) == ["file", *NIH_LABELS, "findings", "ood_score", "unusual", "reason"]
    assert len(rows) == 9  # 6 PNG + JPEG + MONOCHROME1 + CT; the text file and the empty file are skipped
    assert "notes.png" in err and "empty.dcm" in err and "2 unreadable file(s) skipped" in err
    by_name = rows.set_index(rows["file"].map(lambda f: Path(f).name))[list(NIH_LABELS)].astype(float)
    # One inference path: a test film scores exactly as the training run's test step scored it.
    tested = pd.read_csv(run / "test_predictions.csv").set_index("image")[list(NIH_LABELS)]
    pngs = sorted(n for n in by_name.index if n in tested.index)
    assert len(pngs) == 6
    assert np.abs(by_name.loc[pngs].to_numpy() - tested.loc[pngs].to_numpy()).max() < 2e-6
    # MONOCHROME1 is inverted back to the film (within a grey level of the PNG), and so is its JPEG copy
    for other in ("first_mono1.dcm", "first.jpg"):
        assert np.abs(by_name.loc[other].to_numpy() - by_name.loc[pngs[0]].to_numpy()).max() < 0.03


def test_json_lines_and_calls_at_thresholds(films: Path, phantom_run, tmp_path: Path, capsys) -> None:
    run, _ = phantom_run
    out_file = tmp_path / "rows.jsonl"
    png = sorted(films.glob("*_*.png"))[0]  # a phantom test film: like the training films
    code, out, _ = predict(capsys, str(png), "--checkpoint", str(run / "best_model.pth"), "--json",
                           "--out", str(out_file))  # fmt: skip
    assert code == 0 and out == ""
    (row,) = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert set(row) == {"file", "probabilities", "findings", "ood_score", "unusual", "reason"}
    assert list(row["probabilities"]) == list(NIH_LABELS) and row["unusual"] is False and row["reason"] is None
    assert 0 < row["ood_score"] < 1  # the shared phantom model carries a gate
    import torch

    thresholds = torch.load(run / "best_model.pth", weights_only=True)["calibration"]["thresholds"]
    called = [n for n, t in zip(NIH_LABELS, thresholds, strict=True) if t is not None and row["probabilities"][n] >= t]
    assert row["findings"] == called


def test_cam_overlays_have_the_films_shape(films: Path, phantom_run, tmp_path: Path, capsys) -> None:
    run, _ = phantom_run
    png = sorted(films.glob("*_*.png"))[0]
    code, _, _ = predict(capsys, str(png), str(films / "ct.dcm"), "--checkpoint", str(run / "best_model.pth"),
                         "--cam", str(tmp_path / "cam"), "--cam_top", "2")  # fmt: skip
    assert code == 0
    made = sorted((tmp_path / "cam").glob("*.png"))
    assert len(made) == 4
    with Image.open(png) as film, Image.open(next(p for p in made if p.name.startswith(png.stem))) as over:
        assert over.size == film.size and over.mode == "RGB"


def test_nothing_readable_and_missing_paths(films: Path, phantom_run, capsys) -> None:
    run, _ = phantom_run
    code, _, err = predict(capsys, str(films / "notes.png"), "--checkpoint", str(run / "best_model.pth"))
    assert code == 2 and "None of the 1 file(s)" in err
    code, _, err = predict(capsys, str(films / "absent.png"), "--checkpoint", str(run / "best_model.pth"))
    assert code == 2 and "absent.png does not exist" in err
