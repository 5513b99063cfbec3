"""Self-describing checkpoints, written atomically, and what resuming a run reads back from them.

A checkpoint is a plain dict of tensors and builtins (loadable with `weights_only=True`): the
unwrapped model's state, optimizer/scheduler/scaler/EMA state, epoch, best metric, the resolved
config, the label order and the data config. `evaluate` and `predict` need only this file.
last.pth also carries every random generator's state and the per-epoch history, so that a run
resumed from it continues exactly as if it had never stopped.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr14.engine import unwrap
from cxr14.errors import UserError
from cxr14.files import atomic_path
from cxr14.labels import LABELS
from cxr14.model import DataConfig, build

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
#: Settings a run cannot change when it resumes: the weights and their meaning depend on them.
FIXED_ON_RESUME = ("model", "image_size")


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
        raise UserError(
            f"Cannot read checkpoint {path}: {_unreadable(exc, path)}. Pass the best_model.pth (or last.pth) of a "
            f"cxr14 training run; a copy cut short has to be copied again."
        ) from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path} is not a cxr14 checkpoint (format {FORMAT_VERSION}): pass the best_model.pth of a cxr14 "
            f"training run, or what `cxr14 export` wrote (model.onnx, or the hf folder)."
        )
    if state.get("labels") != list(LABELS):
        raise UserError(
            f"{path} was trained with another label order ({state.get('labels')}); cxr14's is {list(LABELS)}, and "
            f"reading its outputs in the wrong order would swap findings."
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


# --- resuming ---------------------------------------------------------------------------------------


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random generator this process draws from: torch (CPU and CUDA), numpy, Python, the loaders'."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """The inverse of `rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_tuples(state["python"]))
    for name, g in generators.items():
        g.set_state(state["generators"][name])


def _tuples(x: Any) -> Any:
    """random.setstate wants the nested tuples it gave; a round trip through a checkpoint may give lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def resume_path(resume: str | None, output_dir: Path) -> Path | None:
    """The last.pth to continue from: an explicit path, `auto` = OUTPUT_DIR/last.pth if there is one, or None."""
    if resume is None:
        return None
    if resume == "auto":
        path = output_dir / "last.pth"
        if not path.exists():
            log.info("--resume auto: no %s yet, starting a new run there", path)
            return None
        return path
    path = Path(resume)
    if not path.is_file():
        raise UserError(f"--resume {resume}: no such file. Pass the last.pth of a run, or `auto`.")
    return path


def load_resumable(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Read last.pth for resuming; refuse one from another model, size or label order, or without its state."""
    state = load(path)
    if "optimizer" not in state or "rng" not in state:
        raise UserError(
            f"{path} holds weights only (a best_model.pth?), not the state a run resumes from; pass the last.pth of "
            f"the run."
        )
    old = state["config"]
    changed = [k for k in FIXED_ON_RESUME if old.get(k) != config.get(k)]
    if changed:
        what = ", ".join(f"--{k} {old.get(k)} (now {config.get(k)})" for k in changed)
        raise UserError(
            f"{path} comes from a run with {what}. A run resumes with the settings it started with; drop the "
            f"changed options, or start a new run in another --output_dir."
        )
    others = sorted(k for k in config if k not in ("resume", "output_dir") and old.get(k) != config.get(k))
    if others:
        log.warning("resuming with changed settings (the run will not repeat an uninterrupted one): %s", others)
    return state
