"""The training step: autocast, scaler, clipping, accumulation and stepping in one place.

`backward` and `optimizer_step` are the only code that call `backward`, `scaler.step` or `optimizer.step`, so
the order backward (x accumulation) -> unscale -> clip -> step -> update -> zero_grad is written once and tested
once. (Scoring is `model.inference.predict`, the one inference pass.)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from cxr14.data.pipeline.transforms import DeviceTransform
from cxr14.errors import UserError
from cxr14.model.device import Precision, model_device, unwrap
from cxr14.model.inference import progress_bar
from cxr14.training.loss import LossFn

SYNC_EVERY = 20  # steps between reading the loss back from the device (each read waits for the GPU)

@dataclass
class Optim:
    """What one optimizer step needs besides the gradients."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    clip_grad: float


def backward(loss: torch.Tensor, optim: Optim, divisor: int = 1) -> None:
    """Accumulate the gradients of `loss / divisor` (divisor = micro-batches in this optimizer step)."""
    optim.scaler.scale(loss / divisor if divisor > 1 else loss).backward()


def optimizer_step(model: torch.nn.Module, optim: Optim) -> None:
    """unscale -> clip -> step -> scaler update -> zero_grad, exactly once each, on accumulated gradients."""
    if optim.clip_grad > 0:
        optim.scaler.unscale_(optim.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_grad)
    optim.scaler.step(optim.optimizer)
    optim.scaler.update()
    optim.optimizer.zero_grad(set_to_none=True)


@dataclass
class Stepper:
    """A model and what its optimizer steps need: loss, optimizer, precision, accumulation, EMA, LR clock.

    `updates` counts optimizer steps over the whole run: the per-step LR schedule and the EMA read it, and it is
    saved for resuming.
    """

    model: torch.nn.Module  # possibly DDP- and compile-wrapped
    transform: DeviceTransform  # the training transform (augmentation on)
    loss_fn: LossFn
    optim: Optim
    precision: Precision
    accum_steps: int = 1
    ema: torch.nn.Module | None = None  # timm ModelEmaV3
    on_update: Callable[[int], None] | None = None  # e.g. the cosine schedule's step_update
    updates: int = 0


@dataclass
class EpochProgress:
    """How far an epoch got: micro-batches done, summed loss, images seen and skipped. Resumable mid-epoch."""

    step: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    n_bad: int = 0
    stopped: bool = field(default=False, compare=False)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)


def _is_ddp(model: torch.nn.Module) -> bool:
    return hasattr(getattr(model, "_orig_mod", model), "no_sync")  # torch.compile wraps DDP


def _no_sync(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's no_sync for micro-batches that do not end an optimizer step (no all-reduce of partial gradients)."""
    if sync or not _is_ddp(model):
        return contextlib.nullcontext()
    return getattr(model, "_orig_mod", model).no_sync()


def _join_gradient_sync(s: Stepper, size: int, device: torch.device) -> None:
    """Take part in DDP's gradient all-reduce for a step whose whole micro-batch was unreadable (skipped).

    Every process must run the same collectives in the same order: a process that skipped its backward would
    pair its next all-reduce with the others' current one, and gloo/NCCL abort on the mismatch. So this process
    runs one blank image with its loss multiplied by zero: it adds nothing to the averaged gradient, and its
    earlier accumulated micro-batches still reach the others. BatchNorm's running statistics are left as they
    were (momentum 0 for this forward). A single process simply skips the step's backward.
    """
    norms = [m for m in s.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        with s.precision.autocast():
            loss = s.model(torch.zeros(1, 1, size, size, device=device)).float().sum() * 0.0
        backward(loss, s.optim)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum


def train_one_epoch(
    s: Stepper,
    loader: DataLoader,
    start: EpochProgress,
    stop: Callable[[int], bool],
    desc: str = "train",
    progress: bool = True,
) -> EpochProgress:
    """Continue an epoch from `start` (a fresh one, or one resumed mid-way; the loader skips what was done).

    `stop(updates)` is asked after every optimizer step; when it says so the epoch ends there, with
    `stopped=True`, so that a checkpoint can be written at a step boundary.
    """
    device = model_device(s.model)
    s.model.train()
    total = torch.tensor(start.loss_sum, device=device, dtype=torch.float64)  # on the device: no sync per step
    step, seen, bad = start.step, start.seen, start.n_bad
    n_steps = start.step + len(loader)
    bar = progress_bar(loader, desc, progress, total=n_steps, initial=start.step)
    stopped = False
    for batch in bar:
        bad += len(loader.dataset.report_bad(batch["bad"]))
        group_start = step - step % s.accum_steps
        boundary = (step + 1) % s.accum_steps == 0 or step + 1 == n_steps
        step += 1
        if batch["image"].numel():
            images = s.transform(batch["image"].to(device, non_blocking=True))
            targets = batch["target"].to(device, non_blocking=True)
            with _no_sync(s.model, boundary), s.precision.autocast():
                loss = s.loss_fn(s.model(images), targets)
            backward(loss, s.optim, divisor=min(s.accum_steps, n_steps - group_start))
            total += loss.detach().double() * len(targets)
            seen += len(targets)
        elif boundary and _is_ddp(s.model):
            _join_gradient_sync(s, loader.dataset.source.size, device)
        if not boundary:
            continue
        optimizer_step(s.model, s.optim)
        s.updates += 1
        if s.ema is not None:
            s.ema.update(unwrap(s.model), step=s.updates)
        if s.on_update is not None:
            s.on_update(s.updates)
        if step % SYNC_EVERY == 0:
            _check_finite(total, seen, bar)
        if step < n_steps and stop(s.updates):
            stopped = True
            break
    _check_finite(total, seen, bar)
    return EpochProgress(step, float(total.item()), seen, bad, stopped)


def _check_finite(total: torch.Tensor, seen: int, bar: tqdm) -> None:
    """Read the running loss back (one sync), show it, and stop on NaN/inf rather than train on garbage."""
    value = total.item() / max(seen, 1)
    if not math.isfinite(value):
        raise UserError(
            f"The training loss became {value} by image {seen}: training diverged. Lower --learning_rate, or "
            f"keep --clip_grad on; last.pth and best_model.pth from earlier epochs are kept."
        )
    bar.set_postfix(loss=f"{value:.4f}")

