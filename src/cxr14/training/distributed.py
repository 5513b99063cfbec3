"""torchrun's environment -> a `DistInfo` value; the few collectives training needs; nothing global.

One process per device. `torchrun --nproc_per_node N main.py ...` (or `srun` with torchrun's rendezvous) sets
RANK, WORLD_SIZE and LOCAL_RANK; without them this is a world of one and no process group is created, so the
single-process path runs the same code with no collective at all.

A process that fails must not leave the others waiting forever: collectives carry a timeout (`--dist_timeout`),
and torchrun stops the remaining processes as soon as one exits with an error, reporting that first error.
"""

from __future__ import annotations

import datetime
import inspect
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from cxr14.errors import UserError
from cxr14.model.device import resolve_device
from cxr14.model.inference import Predictions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Who this process is: its rank among `world_size` processes and the device it drives."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, shows progress bars and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value is not None else default
    except ValueError as exc:
        raise UserError(f"Environment variable {name}={value!r} is not an integer (torchrun sets it).") from exc


def _device_for(device_name: str, local_rank: int, world_size: int) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK; alone it takes what --device says."""
    device = resolve_device(device_name)
    if world_size == 1 or device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise UserError(
            f"Process with LOCAL_RANK {local_rank} has no GPU: this node has {torch.cuda.device_count()}. "
            f"Start at most that many processes per node (torchrun --nproc_per_node)."
        )
    return torch.device("cuda", local_rank)


def init(device_name: str, timeout_min: int) -> DistInfo:
    """Read torchrun's environment and join the process group (NCCL on GPUs, gloo on CPUs)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = _device_for(device_name, local_rank, world_size)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(minutes=timeout_min),
            device_id=device if device.type == "cuda" else None,
        )
    return DistInfo(rank, world_size, local_rank, device)


def close(info: DistInfo) -> None:
    """Leave the process group (a no-op for a single process)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(device_name: str, timeout_min: int) -> Iterator[DistInfo]:
    """`init` ... `close`, also on errors."""
    info = init(device_name, timeout_min)
    try:
        yield info
    finally:
        close(info)


def wrap(model: torch.nn.Module, info: DistInfo) -> DistributedDataParallel:
    """DDP without buffer syncing in forward: it would make every forward a collective, and a process with an
    empty batch (all its images unreadable under --on_bad_image skip) would then wait forever for the others.
    Parameters and buffers are still broadcast from rank 0 once, at construction."""
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    no_forward_sync = (
        {"forward_sync_buffers": False}  # torch >= 2.14 names it so and deprecates broadcast_buffers
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
        else {"broadcast_buffers": False}
    )
    # A depthwise conv's weight [C, 1, k, k] gets gradients whose size-1 dimension has another (meaningless)
    # stride, and the reducer warns once per process that this "may impair performance": it does not.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides", category=UserWarning)
    return DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True, **no_forward_sync)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank if `flag` is true on any (a stop request reaching one process stops them all)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (one process: `[obj]`)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_over_ranks(value: float, info: DistInfo) -> float:
    """The sum of a number over all ranks (e.g. images seen, loss totals)."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item())


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def merge_predictions(pred: Predictions, info: DistInfo) -> Predictions:
    """Every process's shard of a split joined into one, in dataset order, each image exactly once.

    The evaluation sampler pads the shards to equal length by repeating images; they are dropped here by
    dataset index, so AUROC is computed on the whole split once, whatever the number of processes.
    """
    if not info.distributed:
        return pred
    parts = gather(pred, info)
    index = np.concatenate([p.index for p in parts])
    index, first = np.unique(index, return_index=True)  # sorted: dataset order; first: drops the padding
    full = [p for p in parts if len(p.index)]

    def joined(field: str) -> np.ndarray | None:
        arrays = [getattr(p, field) for p in full]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)[first]

    notes = np.concatenate([np.asarray(p.notes, dtype=object) for p in full])[first] if all(p.notes for p in full) \
        else ()  # fmt: skip
    bad = dict(b for p in parts for b in p.bad)  # an image the padding repeated is counted once
    return Predictions(joined("logits"), index, joined("targets"), tuple(sorted(bad.items())), joined("ood"),
                       joined("features"), tuple(notes))  # fmt: skip


def report_failure(message: str) -> None:
    """Under torchrun, hand this process's error to the launcher, which prints it as the job's root cause.

    torchrun reads a failed process's error from the JSON file named by TORCHELASTIC_ERROR_FILE; without one its
    summary only says "exitcode: 2".
    """
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        info = {"py_callstack": message, "timestamp": str(int(time.time()))}
        with open(path, "w") as f:
            json.dump({"message": {"message": message, "extraInfo": info}}, f)


def peer_failed(exc: BaseException) -> bool:
    """Whether `exc` is this process noticing that another process of the job died (not an error of its own)."""
    if _env_int("WORLD_SIZE", 1) == 1:
        return False
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out")
    )
