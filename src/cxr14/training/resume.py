"""What resuming a run reads back: every random generator's state, the last.pth to continue from, and the
check that it comes from the same model, size and label order.

last.pth is a checkpoint (`model.checkpoint`) that also carries the optimizer, schedule, scaler and EMA state,
the per-epoch history and the state of every random generator of every process, so that a run resumed from
it continues exactly as if it had never stopped.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr14.errors import UserError
from cxr14.model.checkpoint import load

log = logging.getLogger(__name__)
#: Settings a run cannot change when it resumes: the weights and their meaning depend on them.
FIXED_ON_RESUME = ("model", "image_size")


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
