"""The ONNX graph: pixels in; normalisation, the model and the temperature inside; probabilities and logits out.

A deployer feeds what a decoded film is - uint8 pixels [batch, 1, S, S] - not ImageNet statistics: the graph
is traced from the same `DeviceTransform` and `apply_temperature` that cxr14 itself scores with. Outputs:
"probabilities" [batch, K] (calibrated) and "logits" [batch, K] (raw, so cxr14 can apply its own
calibration path). The batch axis is symbolic ("batch"), traced at 2 because torch.export fixes a dimension
it sees as 0 or 1. `--onnx_float` adds model_float32.onnx, the same graph taking float32 pixel values 0..255
(for pipelines whose decoder gives floats); the first node casts either to float.

Exporter: torch's dynamo-based `torch.onnx.export(dynamo=True)` - the default since torch 2.9 and the one
still developed (the TorchScript exporter is deprecated); it needs onnxscript. Opset 18 is the one its
translation library is written for, so nothing is converted (a lower one silently stays 18, so 18 is the
floor; higher ones are converted, and a conversion that fails is refused); ONNX Runtime runs 18 from 1.14 on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr14.data.pipeline.transforms import DeviceTransform
from cxr14.errors import UserError
from cxr14.model import fields
from cxr14.model.create import DataConfig
from cxr14.model.decision import apply_temperature
from cxr14.model.gate import Gate
from cxr14.model.inference import logits_and_features
from cxr14.model.onnx_runtime import INPUT, OOD

OUTPUTS = ("probabilities", "logits")
TRACE_BATCH = 2
FLOAT_NAME = "model_float32.onnx"
EXPORT_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
#: A protobuf file cannot exceed 2 GiB: larger models keep their weights in a side file (model.onnx.data).
SINGLE_FILE_BYTES = 1_800_000_000


class PixelsToProbabilities(torch.nn.Module):
    """uint8 (or float 0..255) pixels [B, 1, S, S] -> (probabilities, logits), each [B, K], and with a gate
    ood_score [B] as a third output, computed inside the graph from the gate's features."""

    def __init__(
        self, model: torch.nn.Module, data: DataConfig, temperature: np.ndarray | None, gate: Gate | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.transform = DeviceTransform(data.mean, data.std, data.in_chans, None)  # cxr14's own normalisation
        self.temperature = temperature
        self.gate = gate

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.transform(pixels)
        if self.gate is None:
            logits = self.model(x)
            return apply_temperature(logits, self.temperature), logits
        logits, features = logits_and_features(self.model, x)
        return apply_temperature(logits, self.temperature), logits, self.gate.torch_scores(features)

    @property
    def outputs(self) -> tuple[str, ...]:
        return (*OUTPUTS, OOD) if self.gate is not None else OUTPUTS


def io_description(size: int) -> dict[str, str]:
    """What the graph takes and gives, in words, for whoever opens it in Netron or reads its metadata."""
    return {
        "input": f"{INPUT}: uint8 [batch, 1, {size}, {size}], an 8-bit grayscale film resized to {size}x{size} px "
        f"(bilinear), pixel values 0..255; {FLOAT_NAME} takes the same values as float32. No other preprocessing.",
        "outputs": "probabilities: float32 [batch, K] = sigmoid(logits / temperature); logits: float32 [batch, K] "
        "raw; columns in the order of 'labels'. A finding is called when probability >= its threshold (see cxr14). "
        f"With a gate, {OOD}: float32 [batch], the Mahalanobis distance of the film's pooled features from the "
        "training films' over its validation threshold: above 1, the film is unlike the training data.",
    }


def write_onnx(module: PixelsToProbabilities, block: dict[str, Any], path: Path, opset: int) -> None:
    """Export, add cxr14's fields as metadata, save, and run onnx.checker on the file."""
    size = block["image_size"]
    example = torch.zeros(TRACE_BATCH, 1, size, size, dtype=torch.uint8)
    module = module.cpu().eval()
    try:
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            verbose=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=list(module.outputs),
            dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}},
        )
    except Exception as exc:  # the exporter raises its own and torch.export's error types
        raise unexportable(exc, block["card"]["model"], opset) from exc
    written = program.model.opset_imports.get("")
    if written != opset:
        raise UserError(
            f"torch's ONNX exporter could not convert {block['card']['model']} to opset {opset} (it wrote opset "
            f"{written}). Use --opset 18, the opset the exporter writes without conversion."
        )
    program.model.metadata_props.update(
        {fields.KEY: json.dumps(block), "labels": ",".join(block["labels"]), **io_description(size)}
    )
    weights = sum(p.numel() * p.element_size() for p in module.parameters())
    program.save(str(path), external_data=weights > SINGLE_FILE_BYTES)
    _check(path)


def _check(path: Path) -> None:
    """onnx.checker on the saved file (by path, so a model with a side file of weights is checked whole)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else ""
        raise UserError(f"onnx.checker refuses the exported graph {path.name}: {first}") from exc


def write_float_variant(path: Path, target: Path) -> None:
    """The same graph taking float32 pixels: only the input's declared type changes (its first node casts).

    Weights kept in a side file are shared, not copied: the new graph points at the same model.onnx.data.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    graph.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    onnx.save_model(graph, str(target))
    _check(target)


def unexportable(exc: BaseException, model_name: str, opset: int) -> UserError:
    """One paragraph for a model the exporter refused, naming the operator when the exporter does."""
    text = "\n".join(str(e) for e in _chain(exc))
    op = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", text) or re.search(
        r"target=torch\.ops\.([\w.]+?)(?:\.default)?\]", text
    )
    if op:
        why = f"the exporter has no ONNX translation for the operator {op.group(1)} (opset {opset})"
    else:
        inner = next((e for e in reversed(_chain(exc)) if str(e).strip()), exc)
        why = f"{type(inner).__name__}: {str(inner).strip().splitlines()[0][:240] if str(inner).strip() else ''}"
    return UserError(
        f"{model_name} cannot be exported to ONNX: {why}. The timm / Hugging Face folder (--format hf) does not "
        f"need ONNX; for ONNX, try another --opset, or an architecture the exporter covers (ConvNeXt, "
        f"EfficientNet, ViT and Swin do)."
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen
