"""Session fixtures shared by test_serve.py and test_serve_browser.py (a pytest plugin: both name it in
`pytest_plugins`, so each fixture is made once a session): the phantom model, two films, and what
`cxr14 predict --json` prints for them. The CLI starts in the background when first asked for and is waited
for only by the tests that compare with it, so its few seconds of start-up overlap the other tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr14.model.loading import LoadedModel, load_model
from tests.test_films import dicom_bytes, make_dicom


@pytest.fixture(scope="session")
def serve_checkpoint(phantom_run: tuple[Path, Path]) -> Path:
    return phantom_run[0] / "best_model.pth"


@pytest.fixture(scope="session")
def serve_model(serve_checkpoint: Path) -> LoadedModel:
    return load_model(serve_checkpoint, "cpu")


@pytest.fixture(scope="session")
def serve_films(phantom_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """film.png (a phantom film) and film.dcm (the same pixels as a 12-bit DICOM), in a folder of their own."""
    folder = tmp_path_factory.mktemp("films")
    source = sorted((phantom_run[1] / "images").glob("*.png"))[7]
    shutil.copy(source, folder / "film.png")
    pixels = np.array(Image.open(source).convert("L"), dtype=np.uint16) * 16
    (folder / "film.dcm").write_bytes(dicom_bytes(make_dicom(pixels)))
    return folder


class PredictRun:
    """`cxr14 predict film.png film.dcm --json`, run where the films are (so "file" is the bare name)."""

    def __init__(self, films: Path, checkpoint: Path) -> None:
        cmd = [sys.executable, "-m", "cxr14", "predict", "film.png", "film.dcm", "--checkpoint", str(checkpoint),
               "--json", "--device", "cpu", "--no-progress", "--num_workers", "0"]  # fmt: skip
        self.process = subprocess.Popen(cmd, cwd=films, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._rows: dict[str, dict] | None = None

    def rows(self) -> dict[str, dict]:
        if self._rows is None:
            out, err = self.process.communicate(timeout=300)
            assert self.process.returncode == 0, err
            self._rows = {row["file"]: row for row in map(json.loads, out.splitlines())}
        return self._rows


@pytest.fixture(scope="session")
def predict_run(serve_films: Path, serve_checkpoint: Path) -> Iterator[PredictRun]:
    run = PredictRun(serve_films, serve_checkpoint)
    yield run
    if run.process.poll() is None:
        run.process.kill()
        run.process.communicate()


@pytest.fixture(scope="session")
def cli_rows(predict_run: PredictRun) -> dict[str, dict]:
    """What `cxr14 predict --json` printed, by file name: {"film.png": row, "film.dcm": row}."""
    return predict_run.rows()
