"""What a model needs besides its weights, as one JSON block that travels inside every exported file.

The label order, the data config (size, channels, mean, std), the thresholds and temperatures chosen on
validation and the model card go into the Hugging Face folder's config.json under the key "cxr14" (timm
ignores top-level keys it does not know; inside `pretrained_cfg` it would refuse them) and into the ONNX
graph's metadata. `read` is the inverse, so `cxr14 predict` gives the same rows from either file as from
the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cxr14 import __version__
from cxr14.errors import UserError
from cxr14.model.create import DataConfig
from cxr14.model.decision import ValidationChoice
from cxr14.model.gate import Gate

#: config.json's key for these fields.
KEY = "cxr14"


def describe(
    data: DataConfig, calibration: ValidationChoice | None, card: dict[str, Any], gate: Gate | None = None
) -> dict[str, Any]:
    """The block: plain JSON types only; thresholds are None where a finding had no threshold (one class only).

    `gate`: the out-of-distribution gate's statistics, for a file that carries them as data (the hf folder's
    config.json); the ONNX graph computes its gate inside and its block names only the card's gate summary.
    """
    size = data.image_size
    choice = calibration.to_json() if calibration is not None else {}
    return {
        "version": __version__,
        "labels": list(card["labels"]),
        "image_size": size,
        "in_chans": data.in_chans,
        "mean": list(data.mean),
        "std": list(data.std),
        "preprocessing": f"8-bit grayscale film resized to {size}x{size} px (bilinear), then (x / 255 - mean) / std",
        "thresholds": choice.get("thresholds"),
        "temperature": choice.get("temperature"),
        "threshold_rule": choice.get("threshold_rule"),
        "decision": "probability = sigmoid(logit / temperature); a finding is called when probability >= threshold",
        "gate": gate.to_json() if gate is not None else None,
        # The local path of the checkpoint means nothing elsewhere (and need not be published): its name only.
        "card": json.loads(json.dumps({**card, "checkpoint": Path(str(card.get("checkpoint", ""))).name}, default=str)),
    }


def read(block: Any, source: Path) -> tuple[DataConfig, ValidationChoice | None, dict[str, Any]]:
    """(data config, calibration or None, model card) from a block written by `describe`."""
    if not isinstance(block, dict) or "labels" not in block:
        raise UserError(
            f"{source} was not written by `cxr14 export` (it has no '{KEY}' fields), so its output order and "
            f"preprocessing are unknown. Pass a best_model.pth, or the hf folder or model.onnx that `cxr14 export` "
            f"wrote."
        )
    data = DataConfig(int(block["image_size"]), int(block["in_chans"]), tuple(block["mean"]), tuple(block["std"]))
    calibration = ValidationChoice.from_json(block) if block.get("thresholds") is not None else None
    card = {**block.get("card", {}), "checkpoint": str(source), "labels": list(block["labels"])}
    return data, calibration, card
