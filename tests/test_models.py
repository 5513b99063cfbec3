"""Every model the original documentation names trains at a size other than its pretraining size, from
scratch and from a weights file in timm's layout; sizes a model cannot take fail before a run folder exists."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv

from cxr14.errors import UserError
from cxr14.labels import NIH_LABELS
from cxr14.model import checkpoint
from cxr14.model.create import build, check_image_size, create_model
from tests.conftest import REPO, make_nih_folder, run_cli

#: Each seed model at a small size other than its pretraining size (224), chosen to make timm adapt:
#: ViT's 14x14 position grid becomes 3x3; Swin's last two stages (4 and 2 px) get smaller windows than 7.
SIZES = {
    "convnext_tiny": 64,
    "convnext_small": 64,
    "swin_tiny_patch4_window7_224": 64,
    "vit_base_patch16_224": 48,
    "efficientnet_b0": 64,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Batches of 2 small images: one intra-op thread is as quick, and spins no CPU against the other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_step(model: torch.nn.Module, size: int) -> None:
    """One forward + backward on a batch of 2 gray images; the head says 14 and every weight gets a gradient."""
    model.train()
    out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 14)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, dict]]:
    """Writes (once per model) a randomly initialised timm model as published: 3 channels, 1000 classes, 224 px."""
    folder, written = tmp_path_factory.mktemp("weights"), {}

    def write(name: str) -> tuple[Path, dict]:
        if name not in written:
            state = timm.create_model(name).state_dict()
            path = folder / f"{name}.safetensors"
            if name == "efficientnet_b0":  # a .pth in a training-checkpoint wrapper with DDP's prefix, too
                path = folder / f"{name}.pth"
                torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
            else:
                save_file(state, str(path))
            written[name] = (path, state)
        return written[name]

    return write


@pytest.mark.parametrize("name", [n for n in SIZES if n != "vit_base_patch16_224"])  # ViT: the round trip below
def test_builds_and_trains_from_scratch(name: str) -> None:
    size = SIZES[name]
    check_image_size(name, size)
    model, data = create_model(name, False, None, size, len(NIH_LABELS))
    assert data.image_size == size and data.in_chans == 1
    _train_step(model, size)


@pytest.mark.parametrize("name", list(SIZES))
def test_weights_file_is_adapted_by_timm(name: str, imagenet_file: Callable) -> None:
    size = SIZES[name]
    path, saved = imagenet_file(name)
    model, data = create_model(name, True, path, size, len(NIH_LABELS))
    cfg = model.pretrained_cfg
    stem, heads = f"{cfg['first_conv']}.weight", {f"{cfg['classifier']}.weight", f"{cfg['classifier']}.bias"}
    mine = model.state_dict()
    assert torch.allclose(mine[stem], adapt_input_conv(1, saved[stem]))  # folded to one channel by timm
    assert mine[stem].shape[1] == 1 and data.in_chans == 1
    assert model.get_classifier().out_features == 14  # a new head, not the file's 1000 rows
    assert not torch.equal(mine[f"{cfg['classifier']}.weight"], saved[f"{cfg['classifier']}.weight"][:14])
    reshaped = {k for k in mine if mine[k].shape != saved[k].shape} - heads - {stem}
    assert all(k.endswith(("pos_embed", "relative_position_bias_table")) for k in reshaped), reshaped
    assert all(torch.equal(mine[k], saved[k]) for k in set(mine) - reshaped - heads - {stem})  # the rest as saved
    if name.startswith("vit"):  # the 14x14 grid resampled to 3x3 by timm's bicubic resampling
        assert mine["pos_embed"].shape == (1, 1 + (size // 16) ** 2, 768)
        assert torch.allclose(mine["pos_embed"], resample_abs_pos_embed(saved["pos_embed"], [size // 16] * 2))
    if name.startswith("swin"):  # stages at 16, 8, 4, 2 px: windows 7, 7, 4, 2 with (2w-1)^2 table rows
        tables = [mine[f"layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[0] for i in range(4)]
        assert tables == [13 * 13, 13 * 13, 7 * 7, 3 * 3]
    _train_step(model, size)


def test_large_convnext_by_construction_only() -> None:
    check_image_size("convnext_large", 96)
    with torch.device("meta"):  # shapes only: 200M parameters would cost seconds to initialise
        model = build("convnext_large", 1, len(NIH_LABELS), image_size=96)
        assert model(torch.empty(2, 1, 96, 96)).shape == (2, 14)
    assert model.stem[0].in_channels == 1 and model.get_classifier().out_features == 14


def test_file_of_another_architecture(imagenet_file: Callable, tmp_path: Path) -> None:
    path, _ = imagenet_file("efficientnet_b0")
    with pytest.raises(UserError, match=r"do not fit 'convnext_tiny'.*\d+ backbone key\(s\) missing.*unexpected"):
        create_model("convnext_tiny", True, path, 64, len(NIH_LABELS))
    save_file(timm.create_model("convnext_femto").state_dict(), str(tmp_path / "femto.safetensors"))
    with pytest.raises(UserError, match=r"of another shape \(e\.g\. stem\.0\.weight: \[48, 1, 4, 4\] vs"):
        create_model("convnext_atto", True, tmp_path / "femto.safetensors", 64, len(NIH_LABELS))
    (tmp_path / "junk.safetensors").write_bytes(b"not a weights file")
    with pytest.raises(UserError, match="Cannot read weights"):
        create_model("convnext_atto", True, tmp_path / "junk.safetensors", 64, len(NIH_LABELS))


@pytest.mark.parametrize(
    ("name", "size", "accepted"),
    [
        ("vit_base_patch16_224", 100, "multiples of 16 from 16 px up (nearest: 96 or 112)"),
        ("swin_tiny_patch4_window7_224", 98, "multiples of 4 from 32 px up (nearest: 96 or 100)"),
        ("swin_tiny_patch4_window7_224", 16, "multiples of 4 from 32 px up (nearest: 32)"),
        ("convnext_tiny", 31, "any size from 32 px up (nearest: 32)"),
        ("efficientnet_b0", 16, "any size from 32 px up"),
        ("efficientformer_l1", 96, "cannot run at that size"),  # the meta-device forward catches the rest
    ],
)
def test_bad_image_size_is_named(name: str, size: int, accepted: str) -> None:
    with pytest.raises(UserError, match=rf"--image_size {size} does not fit {name}: .*{re.escape(accepted)}"):
        check_image_size(name, size)


@pytest.mark.parametrize(("name", "size"), [("swin_tiny_patch4_window7_224", 100), ("efficientformer_l1", 224)])
def test_sizes_timm_takes_pass(name: str, size: int) -> None:
    check_image_size(name, size)


def test_bad_image_size_fails_before_the_run_folder(tmp_path: Path) -> None:
    data = make_nih_folder(tmp_path / "data", n_patients=4, per_patient=1)
    out = tmp_path / "run"
    result = run_cli(
        str(REPO / "main.py"),
        *("--model", "swin_tiny_patch4_window7_224", "--image_size", "98", "--device", "cpu"),
        *("--data_dir", str(data), "--output_dir", str(out), "--num_epochs", "1"),
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "--image_size 98 does not fit swin_tiny_patch4_window7_224" in result.stderr
    assert "multiples of 4 from 32 px up" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_vit_from_scratch_trains_and_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    model, data = create_model("vit_base_patch16_224", False, None, 48, len(NIH_LABELS))
    assert data.image_size == 48 and model.pos_embed.shape == (1, 1 + 3 * 3, 768)
    _train_step(model, 48)
    state = checkpoint.make_state(model, "vit_base_patch16_224", data, NIH_LABELS)
    checkpoint.atomic_save(state, tmp_path / "best_model.pth")
    again, data_again = checkpoint.model_from_checkpoint(checkpoint.load(tmp_path / "best_model.pth"))
    assert data_again == data
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), model.eval()(x))
