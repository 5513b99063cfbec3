"""Training reads the `cxr14 prepare` cache when one fits, and nothing else about the run changes."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO, TINY_TRAIN, comparable_metrics, make_nih_folder, run_cli

FAST = [*TINY_TRAIN, "--num_epochs", "1", "--on_bad_image", "skip"]


def test_cached_run_equals_png_run(tmp_path: Path) -> None:
    data = make_nih_folder(tmp_path / "data", n_patients=12, per_patient=2, size=48)
    # PNGs through 2 worker processes; the cache below is gathered in the main process.
    png = run_cli(
        str(REPO / "main.py"),
        "--data_dir",
        str(data),
        "--output_dir",
        str(tmp_path / "png"),
        *FAST,
        "--num_workers",
        "2",
    )
    assert png.returncode == 0, png.stderr
    assert "decoding PNGs on the fly" in png.stderr

    prep = run_cli("-m", "cxr14", "prepare", "--data_dir", str(data), "--image_size", "32", "--on_bad_image", "skip")
    assert prep.returncode == 0, prep.stderr
    assert "1 unreadable image(s) marked bad" in prep.stdout
    cached = run_cli(str(REPO / "main.py"), "--data_dir", str(data), "--output_dir", str(tmp_path / "cached"), *FAST)
    assert cached.returncode == 0, cached.stderr
    assert "using cache" in cached.stderr

    assert comparable_metrics(tmp_path / "png") == comparable_metrics(tmp_path / "cached")
    rows = [(tmp_path / run / "metrics.csv").read_text().splitlines()[1].split(",")[:4] for run in ("png", "cached")]
    assert rows[0] == rows[1]  # same loss and validation AUROC, epoch by epoch

    # A cache whose files changed is not used silently.
    victim = next((data / "images").glob("00000003_*.png"))
    shutil.copy(next((data / "images").glob("00000004_*.png")), victim)
    stale = run_cli(str(REPO / "main.py"), "--data_dir", str(data), "--output_dir", str(tmp_path / "stale"), *FAST)
    assert stale.returncode == 0 and "stale" in stale.stderr and "decoding PNGs" in stale.stderr
