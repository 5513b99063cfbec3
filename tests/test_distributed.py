"""torchrun with 2 gloo processes on the CPU: the same run as one process with the same global batch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TINY_TRAIN, make_nih_folder, run_cli

pytestmark = pytest.mark.slow


def torchrun(nproc: int, *args: str) -> list[str]:
    return ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), str(REPO / "main.py"), *args]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_nih_folder(tmp_path_factory.mktemp("ddp") / "data", n_patients=24, per_patient=3, size=40)
    last = sorted((folder / "images").iterdir())[-1]
    last.write_bytes((folder / "images" / "00000001_001.png").read_bytes())  # repair the fixture's corrupt image
    return folder


def rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def test_two_processes_match_one_with_the_same_global_batch(data: Path, tmp_path: Path) -> None:
    # No augmentation: its random draws are per process. Everything else is the same computation: the sampler
    # gives process r every 2nd image of the epoch's permutation, so each step sees the same 8 images as the
    # single process's step, and DDP averages the two halves' gradients. Only the order of float additions
    # differs (~1e-7 relative in the weights), and AUROC moves only if two validation scores swap places: we
    # allow 1e-3 (identical to 6 decimals when measured).
    common = ["--data_dir", str(data), *TINY_TRAIN, "--num_epochs", "2", "--no-augment", "--learning_rate", "2e-4"]
    common = [a for a in common if a not in ("--batch_size", "8")]
    one = run_cli(str(REPO / "main.py"), *common, "--batch_size", "8", "--output_dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = run_cli(*torchrun(2, *common, "--batch_size", "4", "--output_dir", str(tmp_path / "two")))
    assert two.returncode == 0, two.stderr
    assert "global batch 8 = 4 per process x 2 process(es) x 1 accumulation step(s)" in two.stderr
    assert two.stderr.count("epoch 1: train loss") == 1  # logs from rank 0 only
    for a, b in zip(rows(tmp_path / "one"), rows(tmp_path / "two"), strict=True):
        assert abs(float(a["val_mean_auroc"]) - float(b["val_mean_auroc"])) < 1e-3
        assert abs(float(a["train_loss"]) - float(b["train_loss"])) < 1e-4
    m1, m2 = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("one", "two"))
    assert m1["n_images"] == m2["n_images"] == 18  # every test image scored exactly once, padding dropped
    assert abs(m1["mean_auroc"] - m2["mean_auroc"]) < 1e-3
    best = torch.load(tmp_path / "two" / "best_model.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in best["model"])  # saved unwrapped


def with_a_corrupt_training_image(data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A linked copy of `data` in which one training image is corrupt: (folder, that image)."""
    broken = tmp_path / "data"
    (broken / "images").mkdir(parents=True)
    for item in data.iterdir():
        if item.name != "images":
            (broken / item.name).symlink_to(item)
    for png in (data / "images").iterdir():
        (broken / "images" / png.name).symlink_to(png)
    victim = broken / "images" / "00000003_001.png"
    victim.unlink()
    victim.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return broken, victim


def test_a_failing_process_ends_the_job_with_its_error(data: Path, tmp_path: Path) -> None:
    broken, victim = with_a_corrupt_training_image(data, tmp_path)
    result = run_cli(
        *torchrun(2, "--data_dir", str(broken), *TINY_TRAIN, "--num_epochs", "1", "--output_dir", str(tmp_path / "r")),
        timeout=300,  # a process left waiting on a collective would hang the job: subprocess raises on timeout
    )
    assert result.returncode != 0
    assert "Cannot decode image" in result.stderr and victim.name in result.stderr
    assert "Root Cause" in result.stderr  # torchrun's summary names the first failure, with our message
    assert "]: Traceback" not in result.stderr  # no worker traceback ("[rank1]: Traceback ..."): only torchrun's


def test_a_process_whose_whole_batch_was_skipped_still_joins_the_step(data: Path, tmp_path: Path) -> None:
    # With --on_bad_image skip and 1 image per process, the step that draws the corrupt image has nothing to
    # train on in one process. If that process skipped its backward, the other would wait in DDP's gradient
    # all-reduce until --dist_timeout (1 min) and the job would fail; it must finish instead.
    broken, _ = with_a_corrupt_training_image(data, tmp_path)
    tiny = [a for a in TINY_TRAIN if a not in ("--batch_size", "8")]
    args = ["--data_dir", str(broken), *tiny, "--batch_size", "1", "--num_epochs", "1", "--on_bad_image", "skip"]
    result = run_cli(*torchrun(2, *args, "--dist_timeout", "1", "--output_dir", str(tmp_path / "r")), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 1: 1 unreadable training image(s) skipped" in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "r" / "best_model.pth").is_file()
