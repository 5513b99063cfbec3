"""The learning-rate schedule: ReduceLROnPlateau on the validation mean AUROC (the original's), or cosine.

Plateau steps once per epoch with the validation metric (train.py calls `.step(metric)`); cosine is timm's
CosineLRScheduler counted in optimizer steps with a linear warm-up, stepped by `Stepper.on_update` after
every optimizer step. Both have a state_dict, which last.pth keeps for resuming.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.scheduler import CosineLRScheduler

from cxr14.config import TrainConfig


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    """plateau (on validation mean AUROC, per epoch) or cosine with linear warm-up (per optimizer step)."""
    if cfg.sched == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience
        )
    warmup = cfg.warmup_epochs * steps_per_epoch
    return CosineLRScheduler(
        optimizer,
        t_initial=max(1, cfg.num_epochs * steps_per_epoch - warmup),
        lr_min=cfg.min_lr,
        warmup_t=warmup,
        warmup_lr_init=cfg.min_lr,
        warmup_prefix=True,
        t_in_epochs=False,
    )
