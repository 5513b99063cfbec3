"""create_model(): any timm architecture, 1-channel input, a 14-way head, weights from a file or cache.

Pretrained weights are looked up in this order: `--pretrained_path FILE`, then the local Hugging Face
(or torch hub) cache, then - only if the hub answers - a download through timm. A machine without a
network gets a paragraph that says how to supply the file, not a 50-second retry loop and a traceback.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv

from cxr14.errors import UserError
from cxr14.labels import NUM_CLASSES
from cxr14.net import reachable as hub_reachable

log = logging.getLogger(__name__)
HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class DataConfig:
    """What a model expects of its input; stored in every checkpoint so `predict` needs nothing else."""

    image_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def build(name: str, in_chans: int = 1, num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    """A randomly initialised timm model, or a UserError if timm does not know `name`."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=6, cutoff=0.6)
        raise UserError(
            f"timm does not know a model called '{name}'. Similar names: {', '.join(close) or 'none'}. "
            f"`python -c \"import timm; print(timm.list_models('convnext*'))\"` lists them all."
        )
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)


def data_config(model: torch.nn.Module, image_size: int) -> DataConfig:
    """Normalisation from the model's pretraining config, folded to the model's input channels.

    With in_chans=1 timm sums the RGB stem filters, so a gray pixel normalised by the mean of the
    three channel statistics sees (almost) what the pretrained network saw for a gray RGB pixel.
    """
    cfg = timm.data.resolve_data_config({}, model=model)
    in_chans = _stem_in_chans(model)
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    if in_chans == 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    return DataConfig(image_size=image_size, in_chans=in_chans, mean=mean, std=std)


def _stem_in_chans(model: torch.nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return first.in_channels


def create_model(
    name: str, pretrained: bool, pretrained_path: Path | None, image_size: int
) -> tuple[torch.nn.Module, DataConfig]:
    """The model the trainer uses: 1 input channel, 14 outputs, optionally pretrained weights."""
    model = build(name)
    if pretrained_path is not None or pretrained:
        path = pretrained_path or _cached_weights(model) or _download(name)
        if path is not None:
            load_backbone(model, path)
    return model, data_config(model, image_size)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or .pth/.bin file, unwrapping `model`/`state_dict` containers."""
    if not path.is_file():
        raise UserError(f"Pretrained weights file {path} does not exist; check --pretrained_path.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure is the same thing to the user: a bad file
        raise UserError(
            f"Cannot read weights from {path} ({type(exc).__name__}: {exc}). Expected a .safetensors file "
            f"or a .pth/.bin state dict as published for timm models."
        ) from exc
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def load_backbone(model: torch.nn.Module, path: Path) -> None:
    """Load pretrained weights into `model`, replacing the classifier head and adapting the stem.

    The head of an ImageNet checkpoint has 1000 outputs: it is dropped and stays freshly initialised.
    We then insist that exactly the head's keys were missing - anything else means the file belongs
    to another architecture and training would silently start from a half-random network.
    """
    state = read_state_dict(path)
    head = model.pretrained_cfg.get("classifier", "head.fc")
    heads = (head,) if isinstance(head, str) else tuple(head)
    state = {k: v for k, v in state.items() if not k.startswith(tuple(h + "." for h in heads))}
    stem = model.pretrained_cfg.get("first_conv")
    if stem and f"{stem}.weight" in state:
        w = state[f"{stem}.weight"]
        state[f"{stem}.weight"] = adapt_input_conv(_stem_in_chans(model), w)
    result = model.load_state_dict(state, strict=False)
    head_keys = {k for k in model.state_dict() if k.startswith(tuple(h + "." for h in heads))}
    bad_missing = set(result.missing_keys) - head_keys
    if bad_missing or result.unexpected_keys:
        raise UserError(
            f"Weights in {path} do not fit '{type(model).__name__}': {len(bad_missing)} backbone key(s) "
            f"missing (e.g. {sorted(bad_missing)[:3]}) and {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]}). Pass the weights of the same architecture as --model."
        )
    log.info("loaded pretrained weights from %s (new head: %s)", path, ", ".join(sorted(head_keys)))


def _cached_weights(model: torch.nn.Module) -> Path | None:
    """A weights file already in the Hugging Face or torch hub cache, if there is one."""
    hub_id = model.pretrained_cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    url = model.pretrained_cfg.get("url")
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if candidate.is_file():
            return candidate
    return None


def _download(name: str) -> Path | None:
    """Fetch the weights into the Hugging Face cache through timm, or explain how to supply them."""
    if not hub_reachable(HUB_HOST):
        raise UserError(
            f"--pretrained needs ImageNet weights for '{name}', which are not in the local cache, and "
            f"{HUB_HOST} cannot be reached from this machine. Either download them elsewhere (e.g. "
            f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"`) and copy the "
            f"~/.cache/huggingface folder here, or pass the file itself with --pretrained_path "
            f"(model.safetensors or a .pth state dict). Without --pretrained the model trains from scratch."
        )
    try:
        timm.create_model(name, pretrained=True)  # downloads into the cache
    except Exception as exc:  # network errors come in many types; all mean the same here
        raise UserError(f"Downloading pretrained weights for '{name}' failed: {exc}") from exc
    return _cached_weights(build(name))
