"""GPU-only checks (skipped without CUDA): mixed precision through the real step and the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cxr14.data.pipeline.transforms import AugmentConfig, DeviceTransform
from cxr14.labels import NIH_LABELS
from cxr14.model.create import build
from cxr14.model.device import resolve_precision
from cxr14.training.loss import make_loss
from cxr14.training.step import Optim, backward, optimizer_step
from tests.conftest import REPO, TINY_TRAIN, make_nih_folder, run_cli

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_mixed_precision_step_learns(name: str) -> None:
    device = torch.device("cuda")
    precision = resolve_precision(name, device)
    model = build("convnext_atto", 1, len(NIH_LABELS)).to(device)
    optim = Optim(torch.optim.AdamW(model.parameters(), lr=1e-3), precision.make_scaler(), clip_grad=1.0)
    transform, loss_fn = DeviceTransform((0.45,), (0.23,), 1, AugmentConfig()), make_loss("focal")
    images = torch.randint(0, 256, (16, 1, 64, 64), dtype=torch.uint8, device=device)
    targets = (torch.rand(16, 14, device=device) < 0.3).float()
    losses = []
    for _ in range(20):
        with precision.autocast():
            loss = loss_fn(model(transform(images)), targets)
        backward(loss, optim)
        optimizer_step(model, optim)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_cli_trains_on_gpu(tmp_path: Path) -> None:
    data = make_nih_folder(tmp_path / "data", n_patients=12, per_patient=2, size=48)
    args = [a if a != "cpu" else "cuda" for a in TINY_TRAIN]
    result = run_cli(str(REPO / "main.py"), "--data_dir", str(data), "--output_dir", str(tmp_path / "run"),
                     "--num_epochs", "1", "--on_bad_image", "skip", *args)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "device cuda" in result.stderr and "precision torch.bfloat16" in result.stderr


def test_speed_options_on_gpu(tmp_path: Path) -> None:
    """bf16 + channels_last + torch.compile + EMA + accumulation through the real CLI; the checkpoint is plain."""
    data = make_nih_folder(tmp_path / "data", n_patients=12, per_patient=2, size=48)
    args = [a if a != "cpu" else "cuda" for a in TINY_TRAIN]
    out = tmp_path / "run"
    result = run_cli(str(REPO / "main.py"), "--data_dir", str(data), "--output_dir", str(out), "--num_epochs", "2",
                     "--on_bad_image", "skip", "--channels_last", "--compile", "--ema", "0.9", "--accum_steps", "2",
                     *args)  # fmt: skip
    assert result.returncode == 0, result.stderr
    state = torch.load(out / "best_model.pth", weights_only=True)
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in state["model"])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_with_nccl(tmp_path: Path) -> None:
    data = make_nih_folder(tmp_path / "data", n_patients=24, per_patient=3, size=48)
    args = [a if a != "cpu" else "auto" for a in TINY_TRAIN]
    result = run_cli("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(REPO / "main.py"),
                     "--data_dir", str(data), "--output_dir", str(tmp_path / "run"), "--num_epochs", "1",
                     "--on_bad_image", "skip", *args)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 process(es)" in result.stderr and "device cuda:0" in result.stderr
