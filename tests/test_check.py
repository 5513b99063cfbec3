"""`cxr14 download --check`: a folder is ready only when training would start cleanly, in either layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr14.cli import main
from cxr14.data.nih_download.archives import archives_holding, describe_numbers, nih_contents
from cxr14.data.nih_download.check import inspect_folder
from cxr14.data.nih_download.packaged import write_metadata
from tests.conftest import make_nih_folder


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    """A tiny NIH-format folder with every image readable (conftest's truncates its last one)."""
    root = make_nih_folder(tmp_path / "data", n_patients=6, per_patient=2, size=32)
    last = sorted((root / "images").iterdir())[-1]
    Image.fromarray(np.full((32, 32), 90, np.uint8), "L").save(last)
    return root


def check(data_dir: Path, *args: str) -> int:
    return main(["download", "--check", "--data_dir", str(data_dir), "--no-progress", *args])


def test_clean_folder_is_ready(clean, capsys) -> None:
    assert check(clean, "--deep", "--workers", "2") == 0
    out = capsys.readouterr().out
    assert "training reads Data_Entry_2017.csv (the 2017 release): 12 images" in out
    assert "NIH (images/)" in out and "12 of the CSV's 12 images are present" in out and "decoded 12 PNG(s)" in out
    assert "ready: training will start cleanly." in out and f"cxr14 prepare --data_dir {clean}" in out


def test_missing_corrupt_and_foreign_files_are_found(clean, capsys, monkeypatch) -> None:
    monkeypatch.setattr("cxr14.data.nih_download.check.DECODE_CHUNK", 4)  # 3 tasks: the 2 worker processes really run
    names = sorted(p.name for p in (clean / "images").iterdir())
    (clean / "images" / names[0]).unlink()  # missing
    (clean / "images" / names[1]).write_bytes((clean / "images" / names[1]).read_bytes()[:70])  # corrupt
    shutil.copy(clean / "images" / names[2], clean / "images" / "99999999_000.png")  # foreign
    (clean / "images" / "notes.txt").write_text("not an image")
    assert check(clean, "--deep", "--workers", "2") == 2
    captured = capsys.readouterr()
    assert f"missing: 1, e.g. {names[0]}" in captured.out
    assert f"unreadable: 1, e.g. images/{names[1]} (" in captured.out
    assert "PNGs not in the CSV (training ignores them): 1, e.g. 99999999_000.png" in captured.out
    assert "not PNG files (training ignores them): 1, e.g. images/notes.txt" in captured.out
    assert "not ready to train on: 1 of 12 images named in the CSV are not on disk; 1 image(s) cannot be read" in (
        captured.err
    )
    report = inspect_folder(clean, deep=False, workers=1, progress=False)  # without --deep: no decoding
    assert report.missing == [names[0]] and report.foreign == ["99999999_000.png"] and report.unreadable == {}


def test_foreign_and_non_png_files_alone_do_not_stop_training(clean, capsys) -> None:
    (clean / "images" / "Thumbs.db").write_bytes(b"x")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(clean / "images" / "99999999_000.png")
    assert check(clean) == 0
    out = capsys.readouterr().out
    assert "99999999_000.png" in out and "images/Thumbs.db" in out and "ready" in out


def test_kaggle_layout(clean, capsys) -> None:
    for k, png in enumerate(sorted((clean / "images").iterdir())):
        folder = clean / f"images_{1 + k % 2:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        png.rename(folder / png.name)
    (clean / "images").rmdir()
    assert check(clean, "--deep", "--workers", "1") == 0
    assert "Kaggle (2 images_NNN/images/ folders), 12 PNG files" in capsys.readouterr().out


def test_lists_must_match_the_csv(clean, capsys) -> None:
    listed = (clean / "test_list.txt").read_text()
    (clean / "test_list.txt").write_text(listed + "\n77777777_000.png")
    assert check(clean) == 2
    captured = capsys.readouterr()
    assert "test_list.txt names 1 image(s) that are not in Data_Entry_2017.csv" in captured.err
    assert "77777777_000.png" in captured.out


def test_patient_in_two_splits_is_found(clean, capsys) -> None:
    first_train_val = (clean / "train_val_list.txt").read_text().split("\n")[0]
    (clean / "test_list.txt").write_text((clean / "test_list.txt").read_text() + "\n" + first_train_val)
    assert check(clean) == 2
    assert "are in both" in capsys.readouterr().err


def test_missing_metadata_points_at_download(tmp_path, capsys) -> None:
    (tmp_path / "images").mkdir()
    assert check(tmp_path) == 2
    captured = capsys.readouterr()
    assert "No metadata CSV" in captured.err and f"next: cxr14 download --data_dir {tmp_path}" in captured.out


def test_partial_nih_download_names_the_missing_archives(tmp_path, capsys) -> None:
    """NIH's real metadata with archive 1's names present (as empty files): archives 2-12 are to fetch."""
    write_metadata(tmp_path)
    (tmp_path / "images").mkdir()
    for name in nih_contents()[1]:
        (tmp_path / "images" / name).touch()
    assert check(tmp_path) == 2
    out = capsys.readouterr().out
    assert "4,999 of the CSV's 112,120 images are present" in out and "unreadable: 4,999, e.g." in out
    assert f"next: cxr14 download --data_dir {tmp_path} --only 2-12 (they are in NIH archive(s) 2-12)" in out
    assert "Data_Entry_2017_v2020.csv (the 2020 revision)" in out and "NIH's exact bytes" in out


def test_archive_ranges() -> None:
    contents = nih_contents()
    assert [len(contents[n]) for n in (1, 2, 12)] == [4999, 10000, 7121]
    assert contents[1][0] == "00000001_000.png" and contents[12][-1] == "00030805_000.png"
    assert archives_holding([contents[3][0], contents[3][-1], contents[12][5], "not_nih.png"]) == [3, 12]
    assert describe_numbers([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
