"""Exact resume: a run killed (SIGKILL) or stopped (SIGTERM) part-way and resumed ends bit-identical on the CPU."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cxr14.cli import main
from tests.conftest import REPO, TINY_TRAIN, comparable_metrics, make_nih_folder

pytestmark = pytest.mark.slow
ARGS = [a if a != "32" else "48" for a in TINY_TRAIN]
ARGS = [a if a != "8" else "4" for a in ARGS] + ["--num_epochs", "3", "--on_bad_image", "skip"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_nih_folder(tmp_path_factory.mktemp("resume") / "data", n_patients=24, per_patient=3, size=48)


def command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "main.py"), "--data_dir", str(data), "--output_dir", str(out), *ARGS, *extra]


@pytest.fixture(scope="module")
def reference(data: Path) -> Path:
    out = data.parent / "uninterrupted"
    result = subprocess.run(command(data, out), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return out


def interrupt(data: Path, out: Path, sig: signal.Signals) -> subprocess.CompletedProcess:
    """Start a run and send `sig` shortly after epoch 1 ended (metrics.csv appears), i.e. during epoch 2."""
    proc = subprocess.Popen(command(data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "metrics.csv").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def resume(data: Path, out: Path) -> None:
    result = subprocess.run(
        command(data, out, "--resume", "auto"), capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stderr


def assert_identical(a: Path, b: Path) -> None:
    """Same weights bit for bit, same optimizer state, same metrics.csv rows (but for the timing columns)."""
    for name in ("last.pth", "best_model.pth"):
        sa, sb = (torch.load(run / name, weights_only=True) for run in (a, b))
        assert sa["epoch"] == sb["epoch"]
        assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"]), name

    def table(run: Path) -> list[dict[str, str]]:
        timing = ("seconds", "images_per_s")
        return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader((run / "metrics.csv").open())]

    assert table(a) == table(b) and len(table(a)) == 3
    assert comparable_metrics(a) == comparable_metrics(b)


def test_sigkill_during_epoch_2_then_resume_auto_is_bit_identical(data: Path, reference: Path) -> None:
    out = data.parent / "killed"
    killed = interrupt(data, out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1  # killed before epoch 2 was saved
    resume(data, out)
    assert_identical(reference, out)


def test_sigterm_saves_a_loadable_last_pth_and_says_how_to_resume(data: Path, reference: Path) -> None:
    out = data.parent / "terminated"
    stopped = interrupt(data, out, signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "stopped by SIGTERM" in stopped.stderr and "--resume auto" in stopped.stderr
    state = torch.load(out / "last.pth", weights_only=True)  # complete and loadable
    assert state["partial"] is None or state["partial"]["step"] > 0  # mid-epoch, or at the epoch's end
    resume(data, out)
    assert_identical(reference, out)


def test_resume_refuses_another_config_and_a_truncated_file(
    data: Path, reference: Path, capsys: pytest.CaptureFixture
) -> None:
    last = reference / "last.pth"
    args = ["train", "--data_dir", str(data), *ARGS, "--resume", str(last), "--output_dir", str(data.parent / "x")]
    assert main([*args, "--image_size", "64"]) == 2
    err = capsys.readouterr().err
    assert "--image_size 48 (now 64)" in err and "Traceback" not in err
    truncated = data.parent / "truncated" / "last.pth"
    truncated.parent.mkdir()
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert main(["train", "--data_dir", str(data), *ARGS, "--resume", str(truncated)]) == 2
    err = capsys.readouterr().err
    assert "Cannot read checkpoint" in err and str(truncated) in err
    assert main(["train", "--data_dir", str(data), *ARGS, "--resume", str(reference / "best_model.pth")]) == 2
    assert "weights only" in capsys.readouterr().err
