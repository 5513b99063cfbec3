"""Multi-label losses over 14 independent sigmoids: focal (default), BCE, asymmetric.

All three come from libraries (torchvision's focal loss, PyTorch's BCE, timm's ASL); this module
only picks one and gives it the same `mean over elements` scale.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.loss import AsymmetricLossMultiLabel
from torchvision.ops import sigmoid_focal_loss

from cxr14.config import LOSSES

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_loss(name: str, alpha: float = 0.25, gamma: float = 2.0) -> LossFn:
    """Return loss(logits, targets) -> scalar; logits and targets are float [B, 14]."""
    if name == "focal":
        # Lin et al. 2017: down-weights the many easy negatives that dominate a 14-label problem.
        return lambda logits, targets: sigmoid_focal_loss(
            logits.float(), targets, alpha=alpha, gamma=gamma, reduction="mean"
        )
    if name == "bce":
        return lambda logits, targets: F.binary_cross_entropy_with_logits(logits.float(), targets)
    if name == "asl":
        # Ridnik et al. 2021, timm's implementation; it returns a negative sum, so rescale to a mean.
        asl = AsymmetricLossMultiLabel(gamma_neg=4, gamma_pos=1, clip=0.05)
        return lambda logits, targets: asl(logits.float(), targets) / targets.numel()
    raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
