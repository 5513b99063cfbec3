"""The training step and the evaluation pass: autocast, scaler, clipping and stepping in one place.

`optimizer_step` is the only code that calls `backward`, `scaler.step` or `optimizer.step`,
so the order backward -> unscale -> clip -> step -> update -> zero_grad is written once and
tested once.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from cxr14.data.transforms import DeviceTransform
from cxr14.errors import UserError
from cxr14.loss import LossFn

SYNC_EVERY = 20  # steps between reading the loss back from the device (each read waits for the GPU)


@dataclass(frozen=True)
class Precision:
    """Chosen once per run: autocast dtype (None = fp32) and whether a GradScaler is needed."""

    device_type: str
    dtype: torch.dtype | None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler:
        # Only fp16 underflows; bf16 has fp32's exponent range and needs no loss scaling.
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)


def resolve_device(name: str) -> torch.device:
    """`auto` -> the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for a GPU, but PyTorch sees none here; use --device cpu.")
    return device


def resolve_precision(name: str, device: torch.device) -> Precision:
    """`auto` -> bf16 autocast on a GPU that supports it, fp32 elsewhere (CPU autocast is slow)."""
    if name == "auto":
        name = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    return Precision(device.type, dtypes[name])


@dataclass
class Optim:
    """What one optimizer step needs besides the loss."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    clip_grad: float


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, optim: Optim) -> None:
    """backward -> unscale -> clip -> step -> scaler update -> zero_grad, exactly once each."""
    optim.scaler.scale(loss).backward()
    if optim.clip_grad > 0:
        optim.scaler.unscale_(optim.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_grad)
    optim.scaler.step(optim.optimizer)
    optim.scaler.update()
    optim.optimizer.zero_grad(set_to_none=True)


def _bar(loader: DataLoader, desc: str, progress: bool) -> tqdm:
    return tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    step_parts: tuple[DeviceTransform, LossFn, Optim],
    precision: Precision,
    desc: str = "train",
    progress: bool = True,
) -> dict[str, float]:
    """One pass over `loader`; returns mean loss, images seen and images skipped as unreadable."""
    transform, loss_fn, optim = step_parts
    device = next(model.parameters()).device
    model.train()
    total, seen, bad = torch.zeros((), device=device), 0, 0
    bar = _bar(loader, desc, progress)
    for step, batch in enumerate(bar):
        bad += loader.dataset.report_bad(batch["bad"])
        if batch["image"].numel() == 0:
            continue
        images = transform(batch["image"].to(device, non_blocking=True))
        targets = batch["target"].to(device, non_blocking=True)
        with precision.autocast():
            loss = loss_fn(model(images), targets)
        optimizer_step(loss, model, optim)
        total += loss.detach() * len(targets)  # stays on the device: no GPU sync per step
        seen += len(targets)
        if step % SYNC_EVERY == 0:
            _check_finite(total, seen, bar)
    _check_finite(total, seen, bar)
    return {"loss": total.item() / max(seen, 1), "n_images": seen, "n_bad": bad}


def _check_finite(total: torch.Tensor, seen: int, bar: tqdm) -> None:
    """Read the running loss back (one sync), show it, and stop on NaN/inf rather than train on garbage."""
    value = total.item() / max(seen, 1)
    if not math.isfinite(value):
        raise UserError(
            f"The training loss became {value} by image {seen}: training diverged. Lower --learning_rate, or "
            f"keep --clip_grad on; last.pth and best_model.pth from earlier epochs are kept."
        )
    bar.set_postfix(loss=f"{value:.4f}")


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader: DataLoader,
    transform: DeviceTransform,
    precision: Precision,
    desc: str = "eval",
    progress: bool = True,
) -> dict[str, np.ndarray | int]:
    """Sigmoid probabilities, targets and dataset indices for every readable image in `loader`."""
    device = next(model.parameters()).device
    model.eval()
    probs, targets, index, bad = [], [], [], 0
    for batch in _bar(loader, desc, progress):
        bad += loader.dataset.report_bad(batch["bad"])
        if batch["image"].numel() == 0:
            continue
        with precision.autocast():
            logits = model(transform(batch["image"].to(device, non_blocking=True)))
        probs.append(torch.sigmoid(logits.float()))  # stays on the device until the end: no sync per batch
        targets.append(batch["target"])
        index.append(batch["index"])
    if not probs:
        raise UserError("No readable image in the evaluation set; see the skipped-image count above.")
    return {
        "probs": torch.cat(probs).cpu().numpy(),
        "targets": torch.cat(targets).numpy(),
        "index": torch.cat(index).numpy(),
        "n_bad": bad,
    }
