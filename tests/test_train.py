"""The real trainer, small: `python main.py` for 2 epochs on CPU on a tiny NIH-format folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from cxr14.labels import NIH_LABELS
from cxr14.model import checkpoint
from tests.conftest import REPO, TINY_TRAIN, run_cli

SMALL = [*TINY_TRAIN, "--learning_rate", "1e-3"]


@pytest.fixture(scope="module")
def trained(nih_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    result = run_cli(
        str(REPO / "main.py"),
        "--data_dir",
        str(nih_folder),
        "--output_dir",
        str(out),
        "--num_epochs",
        "2",
        "--on_bad_image",
        "skip",
        "--max_test_samples",
        "12",  # of the 18 test images: the outputs must say that a subset was scored
        *SMALL,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_run_folder_explains_itself(trained: Path) -> None:
    for name in ("config.json", "train.log", "metrics.csv", "last.pth", "best_model.pth", "metrics.json"):
        assert (trained / name).is_file(), name
    config = json.loads((trained / "config.json").read_text())
    assert config["model"] == "convnext_atto" and config["num_epochs"] == 2
    rows = list(csv.DictReader((trained / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["val_mean_auroc"]) <= 1.0 for r in rows)
    assert "unreadable" in (trained / "train.log").read_text()  # the truncated PNG was counted


def test_metrics_json_schema(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert list(metrics["per_class"]) == list(NIH_LABELS)
    defined = [v["auroc"] for v in metrics["per_class"].values() if v["auroc"] is not None]
    assert defined and abs(metrics["mean_auroc"] - sum(defined) / len(defined)) < 1e-9
    assert metrics["n_images"] == sum(1 for _ in (trained / "test_predictions.csv").open()) - 1
    # the test step goes through evaluate's code: intervals, and the subset named as such
    assert metrics["mean_auroc_ci"][0] <= metrics["mean_auroc"] <= metrics["mean_auroc_ci"][1]
    assert metrics["sample"]["scored"] == 12 and metrics["sample"]["of"] == 18
    assert "full official test list" in metrics["sample"]["note"]
    assert "random subset" in (trained / "report.html").read_text()


def test_best_checkpoint_round_trip(trained: Path) -> None:
    raw = torch.load(trained / "best_model.pth", weights_only=True)
    assert raw["model_name"] == "convnext_atto" and raw["labels"] == list(NIH_LABELS)
    assert raw["data_config"]["image_size"] == 32 and raw["config"]["loss"] == "focal"
    model, data = checkpoint.model_from_checkpoint(checkpoint.load(trained / "best_model.pth"))
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, data.in_chans, data.image_size, data.image_size))
    assert out.shape == (2, len(NIH_LABELS))
    last = torch.load(trained / "last.pth", weights_only=True)
    assert last["epoch"] == 2 and {"optimizer", "scheduler", "scaler"} <= set(last)


def test_existing_run_is_not_overwritten(trained: Path, nih_folder: Path) -> None:
    before = (trained / "best_model.pth").read_bytes()
    result = run_cli(
        str(REPO / "main.py"),
        "--data_dir",
        str(nih_folder),
        "--output_dir",
        str(trained),
        "--num_epochs",
        "1",
        "--on_bad_image",
        "skip",
        *SMALL,
    )
    assert result.returncode == 2 and "already holds a training run" in result.stderr
    assert (trained / "best_model.pth").read_bytes() == before
