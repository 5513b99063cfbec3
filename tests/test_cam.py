"""Grad-CAM heatmaps: right layer and layout for each seed architecture, no trace left on the model,
overlays, and - on a model trained on phantoms - maps that point at the drawn signs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from cxr14.data.films.decode import read_gray
from cxr14.data.pipeline.transforms import DeviceTransform
from cxr14.judging import localisation
from cxr14.labels import NIH_LABELS
from cxr14.model import cam, checkpoint

SIZE = 64
#: The seed architectures at a small, non-native size (random weights): each family once (ConvNeXt as its
#: smallest member, atto; tiny..large have the same stage layout and are checked without weights below).
ARCHS = {
    "convnext_atto": {},
    "swin_tiny_patch4_window7_224": {"img_size": SIZE},
    "vit_base_patch16_224": {"img_size": SIZE},
    "efficientnet_b0": {},
}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=len(NIH_LABELS), in_chans=1, **ARCHS[name])


def n_hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    return request.param, build(request.param)


def test_heatmaps_for_each_architecture_leave_the_model_as_found(arch) -> None:
    name, model = arch
    x = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        before = model(x)
    model.train()
    frozen, with_grad = next(model.parameters()), list(model.parameters())[-1]
    frozen.requires_grad_(False)
    with_grad.grad = torch.ones_like(with_grad)
    with torch.no_grad():  # as the caller of an inference pass would be; CAM turns gradients on itself
        maps = cam.heatmaps(model, x, [0, 13])
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert np.allclose(maps.max(axis=(1, 2)), 1, atol=1e-4), f"{name}: a map with no gradient signal"
    assert not np.allclose(maps[0], maps[1])
    assert n_hooks(model) == 0
    assert model.training and all(m.training for m in model.modules())
    assert not frozen.requires_grad and all(p.requires_grad for p in list(model.parameters())[1:])
    assert torch.equal(with_grad.grad, torch.ones_like(with_grad)) and frozen.grad is None
    frozen.requires_grad_(True)
    with_grad.grad = None
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), before)  # plain inference is unchanged afterwards


def test_token_and_channels_last_layouts_match_timm(arch) -> None:
    """Our reshape of the (last) stage's output equals timm's own NCHW feature map of that stage."""
    name, model = arch
    layer, reshape = cam.target_layer(model)
    if reshape is None:
        assert layer is model.get_submodule(model.feature_info[-1]["module"])
        return
    stage = model.blocks[-1] if hasattr(model, "num_prefix_tokens") else layer
    if hasattr(model, "num_prefix_tokens"):
        assert layer is model.blocks[-1].norm1  # the class token reads the patches after this point
    seen = []
    handle = stage.register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        model(x)
        handle.remove()
        ours = reshape(seen[-1])
        (theirs,) = model.forward_intermediates(x, indices=1, norm=False, intermediates_only=True)
    grid = SIZE // 32 if "swin" in name else SIZE // 16  # Swin's last stage: stride 32; ViT-B/16: 16
    assert ours.shape == theirs.shape == (2, theirs.shape[1], grid, grid)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("name", ["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"])
def test_convnexts_read_the_deepest_stage_fine_enough_to_point(name: str) -> None:
    with torch.device("meta"):  # no weights are made: these are 28-200 M parameters
        model = timm.create_model(name, pretrained=False, num_classes=len(NIH_LABELS), in_chans=1)
    for size, stage in ((None, 3), (384, 3), (256, 3), (224, 2), (96, 1), (32, 0)):  # strides 4, 8, 16, 32
        layer, reshape = cam.target_layer(model, size)
        assert layer is model.stages[stage] and reshape is None, (size, stage)


def test_overlay_and_heat_png() -> None:
    film = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1))  # 40 x 50
    heat = np.zeros((8, 8), dtype=np.float32)
    heat[:4, 4:] = 1.0  # hot top-right quarter
    img = cam.overlay(film, heat)
    assert img.mode == "RGB" and img.size == (50, 40)
    rgb = np.asarray(img).astype(int)
    cold = rgb[30:, :15]
    assert (np.abs(cold - film[30:, :15, None]) <= 1).all()  # cold regions show the film untouched
    hot = rgb[2:15, 35:48]
    assert (hot.max(2) - hot.min(2)).mean() > 30  # hot regions are coloured
    with Image.open(io.BytesIO(cam.heat_png(heat))) as png:
        assert png.mode == "RGBA" and png.size == (8, 8)
        alpha = np.asarray(png)[..., 3]
    assert (alpha[:4, 4:] == 255).all() and (alpha[4:] == 0).all()


@pytest.mark.slow
def test_trained_model_points_at_the_drawn_signs(phantom_run) -> None:
    """On the phantoms' box list, the pointing-game hit rate is at least twice the chance rate."""
    run, data = phantom_run
    model, dc = checkpoint.model_from_checkpoint(checkpoint.load(run / "best_model.pth"))
    boxes = localisation.read_boxes(data / "BBox_List_2017.csv")
    size = dc.image_size
    pixels = np.stack([read_gray(data / "images" / name, size) for name in boxes["image"]])
    x = DeviceTransform(dc.mean, dc.std, dc.in_chans, None)(torch.from_numpy(pixels)[:, None])
    maps = cam.heatmaps(model.eval(), x, [NIH_LABELS.index(f) for f in boxes["finding"]])
    sizes = [localisation.image_size(data / "images" / name) for name in boxes["image"]]
    table = localisation.summarize(localisation.score_boxes(boxes, maps, sizes))
    mean = table.loc["mean"]
    assert mean["hit_rate"] >= 2 * mean["chance"], table.round(3).to_string()
