"""An exported ONNX graph run by ONNX Runtime, behind the interface `model.inference.predict` scores with.

`OnnxClassifier` is what `model.loading.load_model` returns for a .onnx file: `.device` and
`__call__(uint8 [B, 1, S, S]) -> float32 logits [B, K]` like `model.inference.Classifier`, so `cxr14 predict`,
`evaluate` and the web page score an ONNX file through the same `predict` and the same calibration
(`LoadedModel.probabilities` on the graph's raw "logits" output) as a checkpoint. Heatmaps need gradients
through the PyTorch model, which a graph does not have: asking for them is a UserError, not a crash.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr14.errors import UserError
from cxr14.model import fields
from cxr14.model.create import DataConfig
from cxr14.model.decision import ValidationChoice
from cxr14.model.inference import Scores

#: The graph's input name and its gate's output (`using.export.onnx_file` writes them; this reads them).
INPUT = "pixels"
OOD = "ood_score"


def require(packages: Sequence[str], what: str) -> None:
    """UserError naming the missing packages and the install command, before any work is done."""
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)}, not installed here: pip install 'cxr14[export]'.")


class OnnxClassifier:
    """An ONNX Runtime session that scores uint8 batches; logits come back as a CPU tensor."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.session = session(path, device)
        self.device = torch.device("cpu")  # where the batches are handed over; ORT moves them itself
        kind = self.session.get_inputs()[0].type
        self.dtype = np.uint8 if kind == "tensor(uint8)" else np.float32
        self.has_gate = OOD in [o.name for o in self.session.get_outputs()]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 1, S, S] -> float32 logits [B, K] (the graph's raw output, before the temperature)."""
        return self.run(images).logits

    def run(self, images: torch.Tensor, features: bool = False) -> Scores:
        """(logits, the graph's ood_score output when it has one, no features: a graph gives none)."""
        if features:
            raise UserError("Fitting a gate needs the PyTorch model's features: use the best_model.pth, not an ONNX "
                            "graph.")  # fmt: skip
        pixels = images.cpu().numpy().astype(self.dtype, copy=False)
        names = ["logits", OOD] if self.has_gate else ["logits"]
        out = self.session.run(names, {INPUT: pixels})
        return Scores(torch.from_numpy(out[0]), torch.from_numpy(out[1]) if self.has_gate else None, None)

    @property
    def model(self) -> torch.nn.Module:
        raise UserError(
            "Heatmaps (--cam, the web page's overlays) need the PyTorch model, and an ONNX graph has no gradients to "
            "follow. Use the best_model.pth, or the hf folder that `cxr14 export` wrote beside the ONNX file."
        )

    @property
    def transform(self) -> Any:
        return self.model  # the same message: only a PyTorch model has a transform to run before a heatmap


def session(path: Path, device: torch.device) -> Any:
    """An onnxruntime.InferenceSession on `path`: CUDA when asked for and available, else the CPU."""
    require(("onnxruntime",), f"Reading {path}")
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # ORT raises its own types for a missing, truncated or unsupported file
        first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else ""
        raise UserError(
            f"ONNX Runtime cannot load {path} ({type(exc).__name__}: {first}). Pass a model.onnx written by "
            f"`cxr14 export` (and its model.onnx.data beside it, if it has one)."
        ) from exc


def load_onnx(
    path: Path, device: torch.device
) -> tuple[OnnxClassifier, DataConfig, ValidationChoice | None, dict[str, Any]]:
    """(classifier, data config, calibration, card) of an ONNX file that `cxr14 export` wrote."""
    if not path.is_file():
        raise UserError(f"{path} does not exist; pass the model.onnx that `cxr14 export` wrote.")
    classifier = OnnxClassifier(path, device)
    stored = classifier.session.get_modelmeta().custom_metadata_map.get(fields.KEY)
    try:
        block = json.loads(stored) if stored else None
    except ValueError:
        block = None
    data, calibration, card = fields.read(block, path)
    return classifier, data, calibration, card
