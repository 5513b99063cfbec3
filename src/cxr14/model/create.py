"""create_model(): any timm architecture at any accepted image size, 1-channel input, a head for the label set.

Architectures whose pretrained config has `fixed_input_size` (ViT, Swin, ...) get `img_size` at
construction, the rule timm's own builder uses; the others (ConvNeXt, EfficientNet, ...) take any size
as they are. `check_image_size` refuses a size an architecture cannot take before any data is read.

Pretrained weights are looked up in this order: `--pretrained_path FILE`, then the local Hugging Face
(or torch hub) cache, then - only if the hub answers - a download through timm. A machine without a
network gets a paragraph that says how to supply the file, not a 50-second retry loop and a traceback.
They are loaded through timm's own pipeline, so position embeddings and relative position tables are
resampled to the new size and the stem is folded to one channel by timm, not by hand.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch.overrides import TorchFunctionMode

from cxr14.data.nih_download.net import reachable as hub_reachable
from cxr14.errors import UserError

log = logging.getLogger(__name__)
HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class DataConfig:
    """What a model expects of its input; stored in every checkpoint so `predict` needs nothing else."""

    image_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def build(name: str, in_chans: int, num_classes: int, image_size: int | None = None) -> torch.nn.Module:
    """A randomly initialised timm model for `image_size` px input, or a UserError if timm does not know `name`."""
    return timm.create_model(name, pretrained=False, **_model_kwargs(name, in_chans, num_classes, image_size))


def _model_kwargs(name: str, in_chans: int, num_classes: int, image_size: int | None) -> dict[str, Any]:
    """timm.create_model arguments; `img_size` exactly where the pretrained config says the size is fixed.

    That is the test timm's builder applies itself (`fixed_input_size` -> the model takes `img_size`);
    passing it elsewhere would fail, since convolutional models have no such argument.
    """
    cfg = _pretrained_cfg(name)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    if image_size is not None and cfg.get("fixed_input_size", False):
        kwargs["img_size"] = image_size
    return kwargs


def _pretrained_cfg(name: str) -> dict[str, Any]:
    """timm's pretrained config of `name` (an empty dict if it has none), or a UserError for an unknown name."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=6, cutoff=0.6)
        raise UserError(
            f"timm does not know a model called '{name}'. Similar names: {', '.join(close) or 'none'}. "
            f"`python -c \"import timm; print(timm.list_models('convnext*'))\"` lists them all."
        )
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:  # a known architecture with an unknown `.tag`
        tags = sorted(timm.list_pretrained(name.split(".")[0] + ".*"))
        raise UserError(f"{exc} Known tags: {', '.join(tags) or 'none'}.") from exc
    return cfg.to_dict() if cfg is not None else {}


def check_image_size(name: str, image_size: int) -> None:
    """Refuse an `image_size` that `name` cannot take, in well under a second, before data or a run folder.

    Two rules read from the model's structure, then the model itself: (1) a model that cuts the image into
    patches (`patch_embed.patch_size`: ViT, Swin) needs a multiple of the patch size - timm would silently
    crop the remainder; (2) the size must be at least the total stride of the last stage (`feature_info`),
    so that stage has at least one pixel; (3) a forward pass on the `meta` device (shapes only, no memory,
    no arithmetic) must run, which catches whatever else an architecture requires. An architecture that
    cannot run on `meta` even at its pretraining size is left to timm.
    """
    built = _meta_build(name, image_size)
    error = built if isinstance(built, Exception) else None
    if isinstance(built, torch.nn.Module):
        step, stride = _size_rule(built)
        if image_size % step or image_size < stride:
            raise UserError(_size_message(name, image_size, step, stride))
        error = _meta_forward(built, image_size)
    if error is None:
        return
    native = int(_pretrained_cfg(name).get("input_size", (3, 224, 224))[-1])
    at_native = _meta_build(name, native)
    if isinstance(at_native, Exception) or _meta_forward(at_native, native) is not None:
        log.debug("cannot check image sizes of %s on the meta device (%s)", name, error)
        return
    reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    raise UserError(
        f"--image_size {image_size} does not fit {name}: timm's model cannot run at that size ({reason}). "
        f"It runs at its pretraining size, --image_size {native}."
    )


class _NoValuesOnMeta(TorchFunctionMode):
    """Skip value-filling in-place ops (weight initialisation) on meta tensors, which hold no values anyway.

    Initialising ConvNeXt-L on `meta` otherwise takes ~0.3 s of slow reference kernels for nothing.
    In-place ops that change a tensor's shape still run.
    """

    RESHAPING = frozenset({"resize_", "resize_as_", "as_strided_", "set_", "squeeze_", "unsqueeze_", "t_",
                           "transpose_", "swapdims_", "swapaxes_"})  # fmt: skip

    def __torch_function__(
        self, func: Callable, types: tuple, args: tuple = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        op = getattr(func, "__name__", "")
        if op.endswith("_") and not op.startswith("_") and op not in self.RESHAPING:
            target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes `tensor=` by name
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def _meta_build(
    name: str, image_size: int | None, in_chans: int = 1, num_classes: int = 1
) -> torch.nn.Module | Exception:
    """`name` built for `image_size` on the meta device, or why it could not be (the head's width does not change
    which sizes fit, so the size check builds one output)."""
    try:
        with torch.device("meta"), _NoValuesOnMeta():
            return build(name, in_chans, num_classes, image_size)
    except UserError:
        raise
    except Exception as exc:  # a size the constructor refuses, or an architecture that cannot live on meta
        return exc


def _meta_forward(model: torch.nn.Module, image_size: int) -> Exception | None:
    """Why a training-mode batch of 2 at `image_size` px does not go through `model` (on meta), if it does not."""
    try:
        with torch.no_grad():
            model(torch.empty(2, 1, image_size, image_size, device="meta"))  # _meta_build's in_chans
    except Exception as exc:  # timm's shape checks raise AssertionError, RuntimeError, ValueError, ...
        return exc
    return None


def _size_rule(model: torch.nn.Module) -> tuple[int, int]:
    """(patch size or 1, total stride of the last stage) of a built model."""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    step = math.lcm(*patch) if isinstance(patch, (tuple, list)) else int(patch or 1)
    info = getattr(model, "feature_info", None)
    stride = int(info[-1].get("reduction", 1)) if isinstance(info, list) and info else 1
    return step, stride


def _size_message(name: str, size: int, step: int, stride: int) -> str:
    """The paragraph for a size outside the rule: why, which sizes work, and the nearest ones."""
    smallest = math.ceil(stride / step) * step
    above, below = max(smallest, math.ceil(size / step) * step), size // step * step
    nearest = f"{below} or {above}" if smallest <= below < size else f"{above}"
    shrinks = f"shrinks it {stride}-fold by its last stage, which needs at least 1 pixel"
    if step > 1:
        why = f"it cuts the image into {step} px patches (timm would silently crop a remainder) and {shrinks}"
        takes = f"multiples of {step} from {smallest} px up"
    else:
        why, takes = f"it {shrinks}", f"any size from {smallest} px up"
    return f"--image_size {size} does not fit {name}: {why}, so it takes {takes} (nearest: {nearest})."


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
    name: str, pretrained: bool, pretrained_path: Path | None, image_size: int, num_classes: int
) -> tuple[torch.nn.Module, DataConfig]:
    """The model the trainer uses: 1 input channel, `num_classes` outputs (the data's label set), `image_size`
    px, optionally pretrained."""
    path = None
    if pretrained_path is not None or pretrained:
        path = pretrained_path or _cached_weights(_pretrained_cfg(name)) or _download(name)
    if path is None:
        model = build(name, 1, num_classes, image_size)
    else:
        model = build_pretrained(name, path, image_size, num_classes=num_classes)
    return model, data_config(model, image_size)


def build_pretrained(
    name: str, path: Path, image_size: int | None, in_chans: int = 1, *, num_classes: int
) -> torch.nn.Module:
    """`name` with the weights in `path` loaded through timm, then a fresh `num_classes`-way head.

    timm does the adaptation: its `load_pretrained` runs the architecture's checkpoint filter (position
    embeddings and relative position tables resampled to `image_size`, old layouts converted) and folds
    the stem to `in_chans`. The model is first built with the file's own head (its class count read from
    the file; none for a headless file) because timm then loads strictly: every tensor of the file must
    fit, nothing may be missing. Built at 14 classes, timm would drop the head, load non-strictly and only
    log what was missing - a file of another architecture would start training from a half-random network.
    The head is then replaced with timm's `reset_classifier`, so exactly the head is new.
    """
    cfg = _pretrained_cfg(name)
    state = read_state_dict(path)
    rows = _head_rows(state, cfg)
    overlay = {"state_dict": state, "file": str(path), "num_classes": rows, "label_offset": 0}
    try:
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay=overlay, **_model_kwargs(name, in_chans, rows, image_size)
        )
    except Exception as exc:  # filters and load_state_dict raise many types; all mean "does not fit"
        at = f" at {image_size} px" if image_size else ""
        expected = _meta_build(name, image_size, in_chans, rows)
        raise UserError(
            f"Weights in {path} do not fit '{name}'{at}: {_misfit(exc, state, expected)}. Pass the weights of the "
            f"same architecture as --model (timm's model.safetensors, or a .pth state dict)."
        ) from exc
    model.pretrained_cfg.pop("state_dict", None)  # it would keep a second copy of every weight alive
    model.reset_classifier(num_classes)
    log.info("loaded pretrained weights from %s into %s; new %d-way head", path, name, num_classes)
    return model


def _head_rows(state: dict[str, torch.Tensor], cfg: dict[str, Any]) -> int:
    """The class count of the file's classifier (0 for a headless file), so the strict load can include it."""
    heads = cfg.get("classifier") or ()
    for head in (heads,) if isinstance(heads, str) else heads:
        weight = state.get(f"{head}.weight")
        if isinstance(weight, torch.Tensor) and weight.ndim >= 1:
            return int(weight.shape[0])
    return 0 if heads else int(cfg.get("num_classes", 1000))


def _misfit(exc: Exception, state: dict[str, torch.Tensor], expected: torch.nn.Module | Exception) -> str:
    """What did not fit: from torch's strict-load error, else the file's names against the model's."""
    text = str(exc)
    keys = {}
    for kind in ("Missing", "Unexpected"):
        line = next((ln for ln in text.splitlines() if f"{kind} key(s) in state_dict" in ln), "")
        keys[kind] = re.findall(r'"([^"]+)"', line)
    shape = r"torch\.Size\((\[[^\]]*\])\)"
    shapes = re.findall(rf"size mismatch for ([^:]+): copying a param with shape {shape} .*? is {shape}", text)
    if not any(keys.values()) and not shapes and isinstance(expected, torch.nn.Module):
        names = list(expected.state_dict())  # timm's checkpoint filter failed before loading: compare names
        keys = {"Missing": [k for k in names if k not in state], "Unexpected": [k for k in state if k not in names]}
    parts = [
        f"{len(found)} {label} (e.g. {', '.join(found[:3])})"
        for label, found in (("backbone key(s) missing", keys["Missing"]), ("unexpected", keys["Unexpected"]))
        if found
    ]
    if shapes:
        examples = ", ".join(f"{k}: {given} vs the model's {own}" for k, given, own in shapes[:2])
        parts.append(f"{len(shapes)} of another shape (e.g. {examples})")
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return "; ".join(parts) or f"timm's loader failed with {type(exc).__name__}: {first}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or .pth/.bin file, unwrapping `model`/`state_dict` containers.

    Our own reader rather than timm's `load_state_dict`: across the timm versions we accept (>= 1.0.9),
    that one loads pickles unsafely in older releases and strips `_orig_mod.` only in newer ones.
    """
    if not path.is_file():
        raise UserError(f"Pretrained weights file {path} does not exist; check --pretrained_path.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure is the same thing to the user: a bad file
        first = str(exc).strip().split(". ")[0].splitlines()[0][:200] if str(exc).strip() else ""
        raise UserError(
            f"Cannot read weights from {path} ({type(exc).__name__}: {first}). Expected a .safetensors file, or "
            f"a .pth/.bin state dict (plain, or under 'model'/'state_dict') that torch.load(weights_only=True) reads."
        ) from exc
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a state dict of named tensors.")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def _cached_weights(cfg: dict[str, Any]) -> Path | None:
    """A weights file already in the Hugging Face or torch hub cache for this pretrained config, if any."""
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    url = cfg.get("url")
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
    return _cached_weights(_pretrained_cfg(name))
