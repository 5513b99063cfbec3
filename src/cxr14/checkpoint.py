"""Self-describing checkpoints, written atomically.

A checkpoint is a plain dict of tensors and builtins (loadable with `weights_only=True`): the
unwrapped model's state, optimizer/scheduler/scaler state, epoch, best metric, the resolved
config, the label order and the data config. `evaluate` and `predict` need only this file.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from cxr14.errors import UserError
from cxr14.files import atomic_path
from cxr14.labels import LABELS
from cxr14.model import DataConfig, build

FORMAT_VERSION = 1


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def make_state(model: torch.nn.Module, model_name: str, data: DataConfig, **extra: Any) -> dict[str, Any]:
    """The dict that goes to disk; `extra` carries optimizer/scheduler/epoch/config/..."""
    return {
        "format_version": FORMAT_VERSION,
        "model": unwrap(model).state_dict(),
        "model_name": model_name,
        "labels": list(LABELS),
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
        raise UserError(f"Cannot read checkpoint {path} ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} is not a cxr14 checkpoint (format {FORMAT_VERSION}).")
    if state["labels"] != list(LABELS):
        raise UserError(f"{path} was trained with another label order: {state['labels']}")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> tuple[torch.nn.Module, DataConfig]:
    """Rebuild the trained model and its data config from a loaded checkpoint."""
    data = DataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["data_config"].items()})
    model = build(
        state["model_name"], in_chans=data.in_chans, num_classes=len(state["labels"]), image_size=data.image_size
    )
    model.load_state_dict(state["model"])
    return model, data
