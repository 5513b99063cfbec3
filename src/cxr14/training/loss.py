"""Multi-label losses over independent sigmoids: focal (default), BCE, asymmetric; unknown labels masked.

All three come from libraries (torchvision's focal loss, PyTorch's BCE, timm's ASL); this module picks one,
computes it element by element, and averages over the *known* labels only: a target of UNKNOWN (-1) adds
nothing to the loss or its gradient, whatever the loss. On NIH, where every label is known, that is exactly
the mean over all elements.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.loss import AsymmetricLossMultiLabel
from torchvision.ops import sigmoid_focal_loss

from cxr14.config import LOSSES

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_loss(name: str, alpha: float = 0.25, gamma: float = 2.0) -> LossFn:
    """Return loss(logits, targets) -> scalar; logits and targets are float [B, K], targets 1, 0 or -1 (unknown).

    No step waits for the device: the mask is applied by arithmetic, never by indexing (which would sync).
    """
    if name == "focal":
        # Lin et al. 2017: down-weights the many easy negatives that dominate a multi-label problem.
        return lambda logits, targets: _masked(
            lambda x, y: sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction="none"), logits, targets
        )
    if name == "bce":
        return lambda logits, targets: _masked(
            lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none"), logits, targets
        )
    if name == "asl":
        # Ridnik et al. 2021, timm's implementation, which returns the sum over its elements. An
        # unknown element is given target 0 and a logit of -1e4: with the clip (0.05) its negative term is
        # log(min(1, 1 - sigmoid + clip)) = log 1 = 0 exactly, and its gradient is cut by torch.where, so the sum
        # is over the known elements alone; dividing by their count gives the mean.
        # Its sum over all elements: timm before 1.0.31 always returns that; 1.0.31 defaults to the batch mean.
        summed = {"reduction": "sum"} if "reduction" in inspect.signature(AsymmetricLossMultiLabel).parameters else {}
        asl = AsymmetricLossMultiLabel(gamma_neg=4, gamma_pos=1, clip=0.05, **summed)

        def masked_asl(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            known = targets >= 0
            x = torch.where(known, logits.float(), torch.full_like(logits, -1e4, dtype=torch.float32))
            return asl(x, torch.where(known, targets, torch.zeros_like(targets))) / known.sum().clamp_min(1)

        return masked_asl
    raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")


def _masked(elementwise: Callable, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """An element-wise loss averaged over the known labels (targets >= 0); unknown ones weigh nothing."""
    known = targets >= 0
    loss = elementwise(logits.float(), torch.where(known, targets, torch.zeros_like(targets)))
    return (loss * known).sum() / known.sum().clamp_min(1)
