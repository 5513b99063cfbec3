"""Is the film upright? One of the cheap film checks, for every model: a film turned by 90 or 180 degrees is
named as such ("looks rotated") instead of being diagnosed.

A classifier of chest findings says nothing reliable about a film on its side, and its out-of-distribution gate
may or may not notice (a ConvNeXt's pooled features are close to rotation-blind). So the film is asked directly: a
small network (about 16,000 weights) reads it at 64 x 64 px and says by how much it is turned: 0, 90, 180 or 270
degrees counter-clockwise. It was trained by `scripts/train_orientation.py` on real films only (Kermany et al.'s
pediatric training films, NIH's adult films of nih1000_64px's train and valid folders) and NIH-format phantoms,
each shown in the four orientations (the labels are the rotations: no one annotated anything), and is shipped
with the package (`orientation.safetensors`, 72 kB). Its accuracy on held-out real films is in the README.

It runs batched in the one inference pass (`model.inference.predict`) on the films a user brings (predict, the
web page), on the batch the loader made at the model's size: about 0.02 ms a film, where one film at a time cost
about 1 ms, a third of a small model's own time.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: The network's input side, and the rotations it tells apart (degrees counter-clockwise, as PIL's rotate).
SIZE = 64
ANGLES = (0, 90, 180, 270)
#: A film is called rotated only when the network is this sure (upright films stay quiet).
CONFIDENCE = 0.9
WEIGHTS = Path(__file__).with_name("orientation.safetensors")


class OrientationNet(nn.Module):
    """Four strided 3x3 convolutions (64 -> 4 px) and one linear layer over the flattened 4 x 4 map: where things
    are in the film is what tells its orientation, so nothing is pooled away."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in ((1, 8), (8, 16), (16, 32), (32, 32)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(32 * (SIZE // 16) ** 2, len(ANGLES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 1, H, W] (films already squashed to a square, as every model's input is) -> float32 [B, 1, SIZE,
    SIZE], each image at zero mean and unit spread: what the network reads, whatever the exposure."""
    x = F.interpolate(images.float(), size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)


@cache
def _network(device: str) -> OrientationNet:
    """The packaged network on `device`, read once per process and device (a read-only asset of the package)."""
    from safetensors.torch import load_file

    net = OrientationNet()
    net.load_state_dict(load_file(WEIGHTS))
    return net.to(device).eval()


@torch.no_grad()
def rotations(images: torch.Tensor) -> tuple[list[int], list[float]]:
    """For a uint8 batch [B, 1, H, W]: by how many degrees counter-clockwise each film looks turned (0, 90, 180 or
    270), and how sure the network is (0..1). One batched pass on the images' device."""
    sure, best = torch.softmax(_network(str(images.device))(prepare(images)), dim=1).max(dim=1)
    return [ANGLES[k] for k in best.tolist()], sure.tolist()


def rotated_reasons(images: torch.Tensor) -> list[str]:
    """Per film of a uint8 batch: why it is not an upright chest film, when the network is sure it is turned;
    else "". Worded so that it stays true of a film that is no chest at all (the network was not trained on
    those)."""
    out = []
    for angle, p in zip(*rotations(images), strict=True):
        if angle == 0 or p < CONFIDENCE:
            out.append("")
            continue
        turn = {90: "a quarter turn counter-clockwise", 180: "upside down", 270: "a quarter turn clockwise"}[angle]
        out.append(f"not an upright chest film: it looks rotated ({turn}; the orientation check is {p:.0%} sure)")
    return out
