"""Bad input gets one clear paragraph and exit status 2, never a traceback, and no half-made run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from cxr14.cli import main
from tests.conftest import TINY_TRAIN, make_nih_folder

FAST = [*TINY_TRAIN, "--num_epochs", "1"]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return make_nih_folder(tmp_path / "data", n_patients=8, per_patient=2, size=32)


def train(capsys: pytest.CaptureFixture, data: Path, *extra: str) -> tuple[int, str]:
    out = data.parent / "run"
    code = main(["train", "--data_dir", str(data), "--output_dir", str(out), *FAST, *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_missing_data_dir(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, err = train(capsys, tmp_path / "nope")
    assert code == 2 and "does not exist" in err and not (tmp_path / "run").exists()


def test_missing_csv(capsys: pytest.CaptureFixture, folder: Path) -> None:
    (folder / "Data_Entry_2017.csv").unlink()
    code, err = train(capsys, folder)
    assert code == 2 and "No metadata CSV" in err


def test_missing_images_fail_then_skip(capsys: pytest.CaptureFixture, folder: Path) -> None:
    for name in ("00000002_000.png", "00000002_001.png"):
        (folder / "images" / name).unlink()
    code, err = train(capsys, folder)
    assert code == 2 and "2 image(s)" in err and "00000002_000.png" in err and "--on_bad_image skip" in err
    code, err = train(capsys, folder, "--on_bad_image", "skip")
    assert code == 0 and "skipping 2 missing image(s)" in err


def test_corrupt_image_fails_by_default(capsys: pytest.CaptureFixture, folder: Path) -> None:
    Image.new("L", (32, 32)).save(folder / "images" / "00000008_001.png")  # repair the fixture's corrupt one
    bad = folder / "images" / "00000001_001.png"  # a test-split image: every run scores it
    bad.write_bytes(bad.read_bytes()[:50])
    code, err = train(capsys, folder, "--on_bad_image", "fail")
    assert code == 2 and "Cannot decode image" in err and bad.name in err


def test_kaggle_layout(capsys: pytest.CaptureFixture, folder: Path) -> None:
    images = sorted((folder / "images").iterdir())
    for i, part in enumerate(("images_001", "images_002")):
        (folder / part / "images").mkdir(parents=True)
        for img in images[i::2]:
            shutil.move(img, folder / part / "images" / img.name)
    (folder / "images").rmdir()
    code, err = train(capsys, folder, "--on_bad_image", "skip")
    assert code == 0, err


def test_list_names_unknown_image(capsys: pytest.CaptureFixture, folder: Path) -> None:
    listed = folder / "test_list.txt"
    listed.write_text(listed.read_text() + "\n99999999_000.png")
    code, err = train(capsys, folder)
    assert code == 2 and "99999999_000.png" in err and "not in" in err


def test_no_lists_means_seeded_patient_split(capsys: pytest.CaptureFixture, folder: Path) -> None:
    (folder / "test_list.txt").unlink()
    code, err = train(capsys, folder, "--on_bad_image", "skip")
    assert code == 0 and "patient-wise split" in err


def test_unknown_model(capsys: pytest.CaptureFixture, folder: Path) -> None:
    code, err = train(capsys, folder, "--model", "convnext_tinyy")
    assert code == 2 and "timm does not know" in err and "convnext_tiny" in err
