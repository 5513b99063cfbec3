"""Where a model runs and in what precision: the device, autocast chosen once, the fast-kernel switches, and
the bare module under DDP / torch.compile wrappers. Shared by training and by every scoring path."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from cxr14.errors import UserError


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
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for a GPU, but PyTorch sees none here; use --device cpu.")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: cxr14 runs on cpu or cuda devices.")
    return device


def resolve_precision(name: str, device: torch.device) -> Precision:
    """`auto` -> bf16 autocast on a GPU that supports it, fp32 elsewhere (CPU autocast is slow)."""
    if name == "auto":
        name = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    return Precision(device.type, dtypes[name])


def use_fast_kernels(device: torch.device) -> None:
    """On GPUs: TF32 tensor cores for fp32 matmuls and convolutions, and cuDNN picking the fastest algorithm
    for the (fixed) input shape. Both change results in the last bits, which is why bit-identical resuming is
    promised on the CPU only. (These are process-wide switches: PyTorch has no per-model ones.)"""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a (possibly wrapped) model's parameters live on."""
    return next(model.parameters()).device

