"""Every option is checked before any work starts; the speed and schedule options run end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from cxr14.cli import main
from tests.conftest import TINY_TRAIN, make_nih_folder


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--batch_size", "0", "--batch_size 0 is out of range: it must be >= 1"),
        ("--image_size", "0", "--image_size 0 is out of range: it must be >= 16"),
        ("--val_fraction", "1.5", "--val_fraction 1.5 is out of range: it must be > 0 and < 1"),
        ("--learning_rate", "-1", "--learning_rate -1.0 is out of range"),
        ("--num_epochs", "0", "--num_epochs 0 is out of range"),
        ("--accum_steps", "0", "--accum_steps 0 is out of range"),
        ("--ema", "1.5", "--ema 1.5 is out of range: it must be > 0 and < 1"),
        ("--lr_factor", "2", "--lr_factor 2.0 is out of range"),
        ("--num_workers", "-1", "--num_workers -1 is out of range"),
    ],
)
def test_out_of_range_options_are_named_before_data_is_read(
    option: str, value: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The data folder does not exist: a message about the option proves the option was checked first.
    code = main(["train", "--data_dir", str(tmp_path / "absent"), option, value])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err and "does not exist" not in err


def test_other_bad_combinations(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert main(["train", "--data_dir", str(tmp_path), "--output_dir", str(afile)]) == 2
    assert "is an existing file, not a folder" in capsys.readouterr().err
    assert main(["train", "--sched", "cosine", "--warmup_epochs", "3", "--num_epochs", "3"]) == 2
    assert "leaves no epoch for the cosine schedule" in capsys.readouterr().err
    assert main(["train", "--resume", "auto"]) == 2
    assert "pass --output_dir too" in capsys.readouterr().err
    assert main(["train", "--device", "tpu:0", "--data_dir", str(tmp_path)]) == 2
    assert "--device 'tpu:0' is not a device" in capsys.readouterr().err


@pytest.mark.slow
def test_ema_cosine_accumulation_channels_last_and_tensorboard(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_nih_folder(tmp_path / "data", n_patients=16, per_patient=3, size=40)
    out = tmp_path / "run"
    args = ["train", "--data_dir", str(data), "--output_dir", str(out), *TINY_TRAIN, "--num_epochs", "3",
            "--on_bad_image", "skip", "--ema", "0.5", "--sched", "cosine", "--warmup_epochs", "1",
            "--learning_rate", "1e-3", "--min_lr", "1e-5", "--accum_steps", "2", "--channels_last",
            "--tensorboard"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "global batch 16 = 8 per process x 1 process(es) x 2 accumulation step(s)" in err
    assert "cosine schedule, EMA, channels_last" in err
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert all(0 <= float(r["val_ema_mean_auroc"]) <= 1 for r in rows)  # the EMA is validated every epoch
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] > 1e-5 and lrs[2] < lrs[1] <= 1e-3  # warmed up, then decaying along the cosine
    best = torch.load(out / "best_model.pth", weights_only=True)
    assert best["weights"] in ("model", "ema") and f"new best: {best['weights']} weights" in err
    last = torch.load(out / "last.pth", weights_only=True)
    assert last["ema"] is not None and last["updates"] > 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
