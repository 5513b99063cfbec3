"""Reading a timm / Hugging Face folder that `cxr14 export` wrote (`using.export.hf`), into what a checkpoint gives.

timm rebuilds the model from config.json and model.safetensors (`local-dir:`), and cxr14's own fields (label
order, data config, thresholds, temperatures, card) come from config.json's "cxr14" key (`model.fields`). Here,
below the exporter, so that the one loader (`model.loading`) reads these folders without importing export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cxr14.errors import UserError
from cxr14.model import fields
from cxr14.model.create import DataConfig
from cxr14.model.decision import ValidationChoice


def load_hf(path: Path) -> tuple[torch.nn.Module, DataConfig, ValidationChoice | None, dict[str, Any], Any]:
    """(model on the CPU, data config, calibration, card, the gate's statistics or None) from a folder that
    `write_hf` wrote."""
    import timm

    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(
            f"{path} is a folder without config.json. Pass a best_model.pth, a model.onnx, or the hf folder that "
            f"`cxr14 export` wrote (OUT/hf)."
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"Cannot read {config_file} ({type(exc).__name__}: {exc}).") from exc
    data, calibration, card = fields.read(config.get(fields.KEY), path)
    try:
        model = timm.create_model(f"local-dir:{path}", pretrained=True)
    except Exception as exc:  # timm's builders and loaders raise many types; all mean "this folder does not load"
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UserError(f"timm cannot load the model in {path} ({type(exc).__name__}: {first}).") from exc
    if model.num_classes != len(card["labels"]):
        raise UserError(f"The model in {path} has {model.num_classes} outputs, but config.json names "
                        f"{len(card['labels'])} findings: the folder is damaged.")  # fmt: skip
    return model, data, calibration, card, config.get(fields.KEY, {}).get("gate")
