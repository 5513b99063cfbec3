"""Self-describing checkpoints, written atomically, and the one reader of them.

A checkpoint is a plain dict of tensors and builtins (loadable with `weights_only=True`): the
unwrapped model's state, optimizer/scheduler/scaler/EMA state, epoch, best metric, the resolved
config, the label order and the data config. `evaluate` and `predict` need only this file.
What resuming adds (random states, history) and checks is `training.resume`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from cxr14.errors import UserError
from cxr14.files import atomic_path
from cxr14.model.create import DataConfig, build
from cxr14.model.device import unwrap

FORMAT_VERSION = 1


def make_state(
    model: torch.nn.Module, model_name: str, data: DataConfig, labels: Sequence[str], **extra: Any
) -> dict[str, Any]:
    """The dict that goes to disk: the label set in the head's order; `extra` carries optimizer/epoch/config/..."""
    return {
        "format_version": FORMAT_VERSION,
        "model": unwrap(model).state_dict(),
        "model_name": model_name,
        "labels": list(labels),
        "data_config": asdict(data),
        **extra,
    }


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through a temp file and a rename: a crash never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`, or explain why it cannot be used."""
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist; pass the best_model.pth of a training run.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: one message for all readers' errors
        raise UserError(
            f"Cannot read checkpoint {path}: {_unreadable(exc, path)}. Pass the best_model.pth (or last.pth) of a "
            f"cxr14 training run; a copy cut short has to be copied again."
        ) from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path} is not a cxr14 checkpoint (format {FORMAT_VERSION}): pass the best_model.pth of a cxr14 "
            f"training run, or what `cxr14 export` wrote (model.onnx, or the hf folder)."
        )
    labels = state.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(n, str) and n for n in labels) \
            or len(set(labels)) != len(labels):  # fmt: skip
        raise UserError(
            f"{path} does not say which finding each output is (its 'labels' are {labels!r}); without them its "
            f"outputs cannot be read. Pass a checkpoint written by cxr14 train."
        )
    return state


def _unreadable(exc: Exception, path: Path) -> str:
    """Why torch.load failed, in a clause (torch's own messages run to paragraphs and advise unsafe loading)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # neither torch's zip nor a pickle
        return "it is not a PyTorch file"
    text = str(exc)
    if "Weights only load failed" in text:
        return (
            "it holds Python objects besides tensors and plain values, and loading those could run code "
            "(torch.load(weights_only=True) refuses it, as it should)"
        )
    if "central directory" in text or "zip archive" in text or isinstance(exc, EOFError):
        return "the file is truncated, or not a PyTorch file"
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"


def model_from_checkpoint(state: dict[str, Any]) -> tuple[torch.nn.Module, DataConfig]:
    """Rebuild the trained model and its data config from a loaded checkpoint."""
    data = DataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["data_config"].items()})
    model = build(
        state["model_name"], in_chans=data.in_chans, num_classes=len(state["labels"]), image_size=data.image_size
    )
    model.load_state_dict(state["model"])
    return model, data
