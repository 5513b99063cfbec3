"""`cxr14 demo`, small: phantoms are generated, a ConvNeXt learns them, the test AUROC is well above chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_demo_learns_phantoms(tmp_path: Path) -> None:
    data = tmp_path / "phantoms"

    def demo(out: str, epochs: str) -> object:
        return run_cli(
            "-m",
            "cxr14",
            "demo",
            "--data_dir",
            str(data),
            "--output_dir",
            str(tmp_path / out),
            "--n_patients",
            "240",
            "--phantom_size",
            "64",
            "--image_size",
            "64",
            "--epochs",
            epochs,
            "--no-progress",
        )

    result = demo("run", "5")
    assert result.returncode == 0, result.stderr
    assert "phantom data: rendering" in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_images"] > 100
    assert metrics["mean_auroc"] > 0.65, metrics  # chance is 0.5
    assert "Pneumothorax" in result.stdout and "mean" in result.stdout  # the per-class table

    again = demo("run2", "1")
    assert again.returncode == 0, again.stderr
    assert "phantom data: reusing" in again.stderr
