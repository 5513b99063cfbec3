"""Class activation maps: where in the film the model found a finding (HiResCAM, from pytorch-grad-cam).

HiResCAM (Draelos & Carin, 2020) multiplies a layer's feature maps by the gradient of one class's logit
element by element and sums over channels; Grad-CAM first averages the gradient over the map, which throws
its spatial detail away. On the last stage, before global average pooling, the two agree; on earlier,
finer stages only HiResCAM still says where. Measured on a convnext_atto trained on phantoms at 96 px
(pointing game over 146 boxes, chance 4.6%): Grad-CAM 6-10% whatever the stage; HiResCAM 9% / 18% / 34%
on the stride 32 / 16 / 8 stages.

Which layer: the map must be fine enough to point at a lesion. A stride-32 stage of a 96 px input is
3 x 3 cells; `target_layer` therefore takes the deepest stage of timm's `feature_info` whose map has at
least MIN_CELLS cells across at the input size (the last stage from 256 px up for stride-32 models).
ViTs keep one grid throughout; their layer is the last block's first LayerNorm, because the class token
reads the patches inside that block, so the patch tokens of the block's output get no gradient at all.

The model is lent, not borrowed: `heatmaps` leaves no hook on it and puts back train/eval mode,
requires_grad and any .grad it found, so the same model serves plain inference right after.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

Reshape = Callable[[torch.Tensor], torch.Tensor]


#: The coarsest map worth reading: a stage is used only if its map has at least this many cells across.
MIN_CELLS = 8


def target_layer(model: torch.nn.Module, image_size: int | None = None) -> tuple[torch.nn.Module, Reshape | None]:
    """The layer the CAM reads for this timm model, and how to turn its output into [B, C, h, w].

    - ViT family (has `blocks` and `num_prefix_tokens`): blocks[-1].norm1; tokens [B, N, C] lose
      their class/register prefix and are laid out on the patch grid.
    - Models with timm's `feature_info` (ConvNeXt, EfficientNet, Swin, ResNet...): the deepest stage whose
      map is at least MIN_CELLS cells across for `image_size` (the last stage when no size is given).
      Swin's stages put channels last (`output_fmt == "NHWC"`), so they are permuted.
    - Anything else: the last Conv2d.
    """
    if hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens"):
        return model.blocks[-1].norm1, _tokens_to_map(model)
    info = getattr(model, "feature_info", None)
    if info:
        stage = len(info) - 1
        while image_size is not None and stage > 0 and image_size // info[stage]["reduction"] < MIN_CELLS:
            stage -= 1
        module = model.get_submodule(info[stage]["module"])
        channels_last = getattr(model, "output_fmt", "NCHW") == "NHWC"
        return module, (_nhwc_to_nchw if channels_last else None)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no layer with a spatial map for a CAM")
    return convs[-1], None


def _nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _tokens_to_map(model: torch.nn.Module) -> Reshape:
    prefix = int(model.num_prefix_tokens)
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)

    def reshape(x: torch.Tensor) -> torch.Tensor:
        tokens = x[:, prefix:, :]
        n = tokens.shape[1]
        h, w = grid if grid is not None and grid[0] * grid[1] == n else (math.isqrt(n), n // math.isqrt(n))
        return tokens.reshape(x.shape[0], h, w, x.shape[2]).permute(0, 3, 1, 2)

    return reshape


def heatmaps(model: torch.nn.Module, inputs: torch.Tensor, classes: Sequence[int]) -> np.ndarray:
    """HiResCAM maps [B, S, S] float32 in [0, 1], one per image for the class given for that image.

    model: the bare model (`checkpoint.unwrap` a DDP or compiled one: hooks go on its layers).
    inputs: the normalised float batch the model eats ([B, C, S, S], on the model's device). Each map
    is upsampled (bilinear) to the input's size and scaled so its maximum is 1; a map with no positive
    evidence is all zeros. Computed in float32 with gradients on, whatever the caller's grad mode.
    """
    from pytorch_grad_cam import HiResCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if inputs.ndim != 4 or len(classes) != inputs.shape[0]:
        raise ValueError(f"need inputs [B, C, S, S] and B classes; got {tuple(inputs.shape)} and {len(classes)}")
    layer, reshape = target_layer(model, inputs.shape[-1])
    x = inputs.detach().float().clone().requires_grad_(True)  # gradients flow from the input, not the weights
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    with _lent(model), torch.enable_grad():
        cam = HiResCAM(model, [layer], reshape_transform=reshape)
        try:  # not `with cam:` - its __exit__ swallows IndexError (e.g. a class out of range) with a print
            maps = cam(input_tensor=x, targets=targets)
        finally:
            cam.activations_and_grads.release()  # removes the forward hooks it put on the layer
    return np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0)


@contextlib.contextmanager
def _lent(model: torch.nn.Module) -> Iterator[None]:
    """Freeze the weights (no .grad is written: less memory) and put mode, flags and grads back after."""
    training = {m: m.training for m in model.modules()}
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in training.items():
            m.training = mode
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad


def _colormap(heat: np.ndarray, name: str = "plasma") -> np.ndarray:
    """[h, w] in [0, 1] -> [h, w, 3] uint8 through a perceptually uniform matplotlib colour map."""
    from matplotlib import colormaps

    lut = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255 + 0.5).astype(np.uint8)
    return lut[(np.clip(heat, 0, 1) * 255 + 0.5).astype(np.uint8)]


def _resize_heat(heat: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size_wh, Image.Resampling.BILINEAR), dtype=np.float32)


def overlay(gray: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The film with its heatmap laid over it, as an RGB image of the film's size.

    heat ([h, w] in [0, 1]) is resized to the film. Each pixel blends in the colour map with weight
    alpha x heat, so cold regions show the film untouched and only the evidence is coloured.
    """
    gray = np.asarray(gray, dtype=np.uint8)
    h = np.clip(_resize_heat(heat, (gray.shape[1], gray.shape[0])), 0, 1)
    weight = (alpha * h)[..., None]
    film = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    mixed = film * (1 - weight) + _colormap(h).astype(np.float32) * weight
    return Image.fromarray(np.clip(mixed + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def heat_png(heat: np.ndarray) -> bytes:
    """The heatmap alone as an RGBA PNG (colour map, alpha = heat) for a browser to lay over the film.

    The page stretches it to the film with CSS and sets the layer's opacity with a slider.
    """
    h = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
    rgba = np.dstack([_colormap(h), (h * 255 + 0.5).astype(np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()
