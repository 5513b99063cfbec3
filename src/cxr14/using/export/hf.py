"""The timm / Hugging Face folder: model.safetensors + config.json (timm's `save_for_hf`) + README.md.

timm rebuilds the model from config.json alone: `model_args` holds what `checkpoint.model_from_checkpoint`
builds with (in_chans, num_classes and, for fixed-size architectures, img_size), and `pretrained_cfg` holds
the checkpoint's own data config (input size, 1-channel mean/std, plain bilinear resize of the whole film).
So `timm.create_model("local-dir:DIR", pretrained=True)`, or `"hf-hub:USER/NAME"` once pushed, gives the
trained model with no extra arguments. cxr14's own fields ride along under config.json's "cxr14" key.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Any

import torch

from cxr14.files import atomic_path, write_text
from cxr14.model import fields
from cxr14.model.create import DataConfig, _model_kwargs
from cxr14.using.export.card import readme

#: The project's own licence, for weights trained from scratch (fine-tuned weights keep their upstream licence).
OWN_LICENSE = "mit"
#: pretrained_cfg fields that describe the ImageNet source weights, not these.
SOURCE_FIELDS = ("tag", "url", "hf_hub_id", "file", "test_input_size", "test_crop_pct", "test_pool_size")


def license_of(model: torch.nn.Module, card: dict[str, Any]) -> str:
    """The upstream weights' licence when fine-tuned from them (timm records it), else the project's."""
    upstream = getattr(model, "pretrained_cfg", {}).get("license")
    return str(upstream) if card.get("pretrained") and upstream else OWN_LICENSE


def write_hf(model: torch.nn.Module, data: DataConfig, block: dict[str, Any], out: Path) -> None:
    """OUT/{model.safetensors, config.json, README.md}. Replaces `model.pretrained_cfg` with the export's."""
    from timm.models import save_for_hf

    name = block["card"]["model"]
    license_id = license_of(model, block["card"])
    model.pretrained_cfg = _pretrained_cfg(model, data, license_id, len(block["labels"]))
    preprocessing = {k: model.pretrained_cfg[k] for k in ("input_size", "mean", "std", "interpolation", "crop_pct",
                                                          "crop_mode")}  # fmt: skip
    extra = {"data_config": preprocessing} if "data_config" in inspect.signature(save_for_hf).parameters else {}
    save_for_hf(
        model,
        str(out),
        model_config={"label_names": list(block["labels"]), fields.KEY: block},
        model_args=_model_kwargs(name, data.in_chans, len(block["labels"]), data.image_size),  # as model.build
        safe_serialization=True,
        **extra,  # recent timm takes the preprocessing here; older releases read it from pretrained_cfg
    )
    _usual_mode(out / "model.safetensors")
    write_text(out / "README.md", readme(block, license_id))


def _usual_mode(path: Path) -> None:
    """safetensors creates its file 0600; give it the mode any new file gets (0666 less the umask).

    An export is made to be shared: a weights file nobody else can read would break a shared model folder.
    The bytes are copied into a file made by `files.atomic_path`, which creates files that way.
    """
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)


def _pretrained_cfg(model: torch.nn.Module, data: DataConfig, license_id: str, num_classes: int) -> dict[str, Any]:
    """timm's config of the architecture, with cxr14's preprocessing in place of ImageNet's.

    cxr14 squashes the whole film to S x S with PIL's bilinear filter (no crop), so crop_pct 1 and crop_mode
    "squash" make timm's own `create_transform(**resolve_data_config(model=...))` do the same.
    """
    source = dict(getattr(model, "pretrained_cfg", {}))
    cfg = {k: v for k, v in source.items() if k not in SOURCE_FIELDS}
    if tuple(source.get("input_size", ())[1:]) != (data.image_size, data.image_size):
        cfg["pool_size"] = None  # the final feature map's size at the source's input size, not at this one
    cfg.update(
        input_size=(data.in_chans, data.image_size, data.image_size),
        mean=tuple(data.mean),
        std=tuple(data.std),
        interpolation="bilinear",
        crop_pct=1.0,
        crop_mode="squash",
        num_classes=num_classes,
        license=license_id,
    )
    return cfg
