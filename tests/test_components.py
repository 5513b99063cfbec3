"""Metrics, losses, the optimizer step, transforms and model loading, each against a reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score
from torchvision.ops import sigmoid_focal_loss

from cxr14.data.pipeline.transforms import AugmentConfig, DeviceTransform
from cxr14.errors import UserError
from cxr14.judging.metrics import auroc
from cxr14.labels import NIH_LABELS, decode, encode
from cxr14.model.create import build, create_model
from cxr14.model.device import Precision
from cxr14.training.loss import make_loss
from cxr14.training.step import EpochProgress, Optim, Stepper, backward, optimizer_step, train_one_epoch


def test_labels_round_trip() -> None:
    assert encode("No Finding").sum() == 0
    assert decode(encode("Effusion|Pleural_Thickening")) == "Effusion|Pleural_Thickening"
    with pytest.raises(KeyError):
        encode("Infiltrate")


def test_auroc_matches_sklearn_and_skips_undefined() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((400, 14)) < 0.2).astype(int)
    scores = rng.random((400, 14)) + 0.4 * targets
    scores[:, 2] = np.round(scores[:, 2], 1)  # ties
    targets[:, 13] = 0  # Hernia absent: undefined
    result = auroc(targets, scores, NIH_LABELS)
    for j, name in enumerate(NIH_LABELS[:13]):
        assert abs(result.per_class[name] - roc_auc_score(targets[:, j], scores[:, j])) < 1e-6
    assert result.per_class["Hernia"] is None and result.n_pos["Hernia"] == 0
    expected = np.mean([roc_auc_score(targets[:, j], scores[:, j]) for j in range(13)])
    assert abs(result.mean - expected) < 1e-6
    assert result.to_json("test")["per_class"]["Hernia"] == {"auroc": None, "n_pos": 0}


def test_focal_loss_matches_torchvision_and_formula() -> None:
    logits, targets = torch.randn(8, 14), (torch.rand(8, 14) < 0.3).float()
    ours = make_loss("focal")(logits, targets)
    assert torch.allclose(ours, sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="mean"))
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = 0.25 * targets + 0.75 * (1 - targets)
    by_hand = (-a_t * (1 - p_t) ** 2 * torch.log(p_t)).mean()
    assert torch.allclose(ours, by_hand, atol=1e-6)
    for name in ("bce", "asl"):
        assert make_loss(name)(logits, targets).item() > 0


class CountingSGD(torch.optim.SGD):
    steps = 0

    def step(self, closure=None):  # type: ignore[override]
        CountingSGD.steps += 1
        return super().step(closure)


@pytest.mark.parametrize("scaled", [False, True])
def test_optimizer_step_steps_once_and_clips(scaled: bool) -> None:
    model = torch.nn.Linear(4, 2)
    opt = CountingSGD(model.parameters(), lr=0.0)
    CountingSGD.steps = 0
    scaler = torch.amp.GradScaler("cpu", enabled=scaled)
    loss = model(torch.full((3, 4), 100.0)).sum() * 1000
    seen = {}
    opt.register_step_pre_hook(
        lambda o, a, k: seen.update(norm=torch.cat([p.grad.flatten() for p in model.parameters()]).norm())
    )
    optim = Optim(opt, scaler, clip_grad=1.0)
    backward(loss, optim)
    optimizer_step(model, optim)
    assert CountingSGD.steps == 1
    assert seen["norm"] <= 1.0 + 1e-4  # clipped on unscaled gradients
    assert all(p.grad is None for p in model.parameters())


def test_device_transform() -> None:
    images = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    plain = DeviceTransform((0.5,), (0.25,), 1, None)(images)
    assert torch.allclose(plain, (images.float() / 255 - 0.5) / 0.25, atol=1e-5)
    three = DeviceTransform((0.4, 0.5, 0.6), (0.2, 0.2, 0.2), 3, AugmentConfig())(images)
    assert three.shape == (4, 3, 32, 32) and torch.isfinite(three).all()
    torch.manual_seed(0)
    a = DeviceTransform((0.5,), (0.25,), 1, AugmentConfig())(images)
    assert not torch.allclose(a, plain)


def test_pretrained_file_replaces_head(tmp_path: Path) -> None:
    imagenet = build("convnext_atto", 3, 1000)
    save_file(imagenet.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"model": imagenet.state_dict()}, tmp_path / "w.pth")
    for file in ("w.safetensors", "w.pth"):
        model, data = create_model("convnext_atto", True, tmp_path / file, 64, len(NIH_LABELS))
        assert data.in_chans == 1 and len(data.mean) == 1 and data.image_size == 64
        assert torch.allclose(model.stem[0].weight, imagenet.stem[0].weight.sum(1, keepdim=True))
        assert torch.equal(model.stages[1].blocks[0].mlp.fc1.weight, imagenet.stages[1].blocks[0].mlp.fc1.weight)
        assert model.head.fc.out_features == 14


def test_pretrained_mismatch_and_unknown_model(tmp_path: Path) -> None:
    torch.save(build("resnet18", 3, 1000).state_dict(), tmp_path / "r.pth")
    with pytest.raises(UserError, match="backbone key"):
        create_model("convnext_atto", True, tmp_path / "r.pth", 64, len(NIH_LABELS))
    with pytest.raises(UserError, match="timm does not know"):
        build("convnext_atoo", 1, len(NIH_LABELS))
    with pytest.raises(UserError, match="does not exist"):
        create_model("convnext_atto", True, tmp_path / "nope.pth", 64, len(NIH_LABELS))


def test_pretrained_offline_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cxr14.model.create._cached_weights", lambda cfg: None)  # nothing in the local cache
    monkeypatch.setattr("cxr14.model.create.hub_reachable", lambda *a, **k: False)
    with pytest.raises(UserError, match="--pretrained_path"):
        create_model("convnext_atto", True, None, 64, len(NIH_LABELS))


class MemorySource:
    """An ImageSource over arrays in memory (for engine tests without files)."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels, self.size = pixels, pixels.shape[-1]

    def __len__(self) -> int:
        return len(self.pixels)

    def read(self, i: int) -> np.ndarray:
        return self.pixels[i].copy()

    def name(self, i: int) -> str:
        return f"image {i}"


def _epoch(batch: int, accum: int, stop_after: int | None = None) -> tuple[torch.nn.Module, EpochProgress]:
    from torch.utils.data import DataLoader

    from cxr14.data.pipeline.dataset import XrayDataset, collate_skipping_bad

    rng = np.random.default_rng(0)
    pixels, labels = rng.integers(0, 256, (16, 8, 8), dtype=np.uint8), rng.random((16, 14)) < 0.3
    data = XrayDataset(MemorySource(pixels), labels, skip_bad=False)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 14))  # fmt: skip
    optim = Optim(torch.optim.SGD(model.parameters(), lr=0.5), torch.amp.GradScaler("cpu", enabled=False), 0.0)
    stepper = Stepper(model, DeviceTransform((0.5,), (0.25,), 1, None), make_loss("bce"), optim,
                      Precision("cpu", None), accum_steps=accum)  # fmt: skip
    loader = DataLoader(data, batch_size=batch, collate_fn=collate_skipping_bad)
    stop = (lambda updates: updates >= stop_after) if stop_after else (lambda updates: False)
    return model, train_one_epoch(stepper, loader, EpochProgress(), stop, progress=False)


def test_accumulation_equals_one_big_batch_and_stops_at_a_step_boundary() -> None:
    big, ep_big = _epoch(batch=8, accum=1)
    small, ep_small = _epoch(batch=4, accum=2)  # two micro-batches of 4 per optimizer step
    for a, b in zip(big.parameters(), small.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert ep_big.seen == ep_small.seen == 16 and abs(ep_big.loss - ep_small.loss) < 1e-6
    _, stopped = _epoch(batch=4, accum=2, stop_after=1)
    assert stopped.stopped and stopped.step == 2 and stopped.seen == 8  # after one whole accumulated step
