"""Batched, on-device normalisation and augmentation of uint8 image batches.

The loader ships uint8 [B, 1, S, S]; everything else happens here, on the GPU when there is one,
as a handful of batched kernels instead of per-sample PIL calls in the workers. Augmentations are
the ones plausible for a frontal chest film: a few degrees of rotation, a little scale and shift,
brightness and contrast. Horizontal flips are off unless asked for: they put the heart on the
right, which no real PA/AP film shows (dextrocardia aside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges for the random train-time augmentation (all symmetric around identity)."""

    rotate_deg: float = 7.0
    scale: float = 0.08
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    hflip: bool = False

    def scaled(self, strength: float) -> AugmentConfig:
        """Every range times `strength` (`--aug_strength`): 2 doubles the rotation, scale, shift and intensity."""
        return AugmentConfig(self.rotate_deg * strength, self.scale * strength, self.translate * strength,
                             self.brightness * strength, self.contrast * strength, self.hflip)  # fmt: skip


class DeviceTransform:
    """uint8 [B, 1, S, S] on the device -> normalised float [B, C, S, S], optionally augmented."""

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        in_chans: int,
        augment: AugmentConfig | None,
        channels_last: bool = False,
    ) -> None:
        std_t = torch.tensor(std).view(1, -1, 1, 1)
        # (x / 255 - mean) / std == x * scale + bias
        self.scale = 1.0 / (255.0 * std_t)
        self.bias = -torch.tensor(mean).view(1, -1, 1, 1) / std_t
        self.in_chans = in_chans
        self.augment = augment
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = self._normalise(images)
        # A model converted to channels_last wants its input so too, or every conv converts it first.
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        if self.scale.device != images.device:
            # Moved once, not per batch: a copy from pageable host memory would wait for the GPU every step.
            self.scale, self.bias = self.scale.to(images.device), self.bias.to(images.device)
        scale, bias = self.scale, self.bias
        # float() then in-place multiply-add: one new tensor, and on a CPU 2x faster than a fused
        # addcmul that promotes uint8 element by element.
        x = images.float()
        if self.augment is not None:
            x = _augment(x.div_(255.0), self.augment)
            scale = scale * 255.0
        if self.in_chans != 1 and bias.shape[1] == 1:
            # One grey statistic: normalise one channel, then repeat it as a view (no 3x copy).
            return x.mul_(scale).add_(bias).expand(-1, self.in_chans, -1, -1)
        if self.in_chans != 1:
            return (x * scale).add_(bias)  # broadcasts [B, 1] to [B, 3]: per-channel statistics
        return x.mul_(scale).add_(bias)


def _augment(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """One random affine warp and intensity change per image, as two batched ops."""
    b, dev = x.shape[0], x.device

    def uniform(r: float) -> torch.Tensor:
        return (torch.rand(b, device=dev) * 2 - 1) * r

    angle = uniform(math.radians(cfg.rotate_deg))
    scale = 1 + uniform(cfg.scale)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    flip = torch.where(torch.rand(b, device=dev) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(b, device=dev)
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(cfg.translate) * 2], dim=1),
            torch.stack([sin * flip, cos, uniform(cfg.translate) * 2], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = (1 + uniform(cfg.contrast)).view(b, 1, 1, 1)
    brightness = uniform(cfg.brightness).view(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp_(0, 1)
