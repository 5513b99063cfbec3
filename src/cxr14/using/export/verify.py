"""Verified, not assumed: the same phantom films through the checkpoint and through each exported file.

Each file is read back the way its users read it, not through cxr14: the hf folder with timm alone
(`create_model("local-dir:...")`, timm's own resolved mean/std, the temperature from config.json), the ONNX
graph with a plain ONNX Runtime session on the CPU (its "probabilities" output). The films are phantoms drawn
at the model's size (`data.phantom.render`), scored as one batch of `--batch` films and once more as a single
film, so a batch axis that only works at the traced size is caught.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cxr14.data.phantom import render
from cxr14.labels import NIH_LABELS
from cxr14.model import fields, gate
from cxr14.model.inference import logits_and_features
from cxr14.model.loading import LoadedModel
from cxr14.model.onnx_runtime import INPUT, OOD, session

#: The largest difference of any probability from the checkpoint's that an export may show ...
TOLERANCE = 1e-4
#: ... and of the gate's ood_score (a distance over its threshold, about 1 at the threshold).
OOD_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Check:
    """One exported file against the checkpoint."""

    name: str  # "hf", "onnx", "onnx float32"
    file: str  # relative to the export folder
    how: str  # how the file was read back
    largest_difference: float
    films: int
    batches: tuple[int, ...]
    largest_ood_difference: float | None = None  # the gate's ood_score, when the model has a gate

    @property
    def passed(self) -> bool:
        ood_ok = self.largest_ood_difference is None or self.largest_ood_difference <= OOD_TOLERANCE
        return bool(self.largest_difference <= TOLERANCE and ood_ok)  # NaN fails too

    def line(self) -> str:
        verdict = "ok" if self.passed else f"FAILED (more than {TOLERANCE:g}, or {OOD_TOLERANCE:g} for ood_score)"
        sizes = " and ".join(map(str, self.batches))
        gap = self.largest_ood_difference
        ood = "" if gap is None else f", |ood_score difference| {gap:.2e}"
        return (
            f"{self.name:13s} largest |probability difference| from the checkpoint: {self.largest_difference:.2e}"
            f"{ood} over {self.films} phantom films in batches of {sizes} ({self.how}): {verdict}"
        )

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "tolerance": TOLERANCE, "ood_tolerance": OOD_TOLERANCE, "passed": self.passed}


def phantom_films(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, 1, size, size]: phantom chest films with random findings, drawn at the model's size."""
    rng = np.random.default_rng(seed)
    findings = (rng.random((n, len(NIH_LABELS))) < 0.3).astype(np.uint8)  # the phantoms draw NIH's findings
    return np.stack([render(f, size, rng) for f in findings])[:, None]


def batches(films: np.ndarray) -> list[np.ndarray]:
    """The whole set as one batch, then its first film alone."""
    return [films, films[:1]]


@dataclass(frozen=True)
class Expected:
    """The checkpoint's answers for the verification films: probabilities, and ood_scores when it has a gate."""

    probs: np.ndarray  # [sum of batch sizes, K]
    ood: np.ndarray | None  # [sum of batch sizes]


def reference(loaded: LoadedModel, films: np.ndarray) -> Expected:
    """The checkpoint's answers, through cxr14's own scoring path."""
    scores = [loaded.classifier.run(torch.from_numpy(b)) for b in batches(films)]
    probs = np.concatenate([loaded.probabilities(s.logits.cpu().numpy()) for s in scores])
    ood = None if scores[0].ood is None else np.concatenate([s.ood.cpu().numpy() for s in scores])
    return Expected(probs, ood)


def check_hf(folder: Path, root: Path, films: np.ndarray, expected: Expected, device: torch.device) -> Check:
    """The folder as a timm user loads it: timm's own reader of the weights, the probabilities by plain torch, and
    the gate's ood_score from config.json's statistics on that model's features."""
    import timm

    model = timm.create_model(f"local-dir:{folder}", pretrained=True).to(device).eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    mean = torch.tensor(cfg["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"], device=device).view(1, -1, 1, 1)
    block = json.loads((folder / "config.json").read_text())[fields.KEY]
    temperature = torch.tensor(block["temperature"] or [1.0] * len(block["labels"]), device=device)
    probs, gate_features = [], []
    with torch.no_grad():
        for b in batches(films):
            x = (torch.from_numpy(b).to(device).float() / 255.0 - mean) / std
            logits, features = logits_and_features(model, x.expand(-1, cfg["input_size"][0], -1, -1))
            probs.append(torch.sigmoid(logits / temperature).cpu().numpy())
            gate_features.append(features.cpu().numpy().astype(np.float64))
    ood = None
    if block.get("gate"):  # the statistics as config.json holds them, scored on the timm model's own features
        ood = gate.from_state(block["gate"], str(folder)).scores(np.concatenate(gate_features))
    how = f"timm local-dir, torch on {device.type}"
    return _compare("hf", folder.relative_to(root), how, np.concatenate(probs), ood, expected, films)


def check_onnx(path: Path, root: Path, films: np.ndarray, expected: Expected) -> Check:
    """The graph as a deployer runs it: ONNX Runtime on the CPU, pixels in, "probabilities" (and ood_score) out."""
    sess = session(path, torch.device("cpu"))
    kind = sess.get_inputs()[0].type
    dtype = np.uint8 if kind == "tensor(uint8)" else np.float32
    gated = OOD in [o.name for o in sess.get_outputs()]
    outs = [sess.run(["probabilities", OOD] if gated else ["probabilities"], {INPUT: b.astype(dtype)})
            for b in batches(films)]  # fmt: skip
    ood = np.concatenate([o[1] for o in outs]) if gated else None
    name = "onnx" if dtype == np.uint8 else "onnx float32"
    return _compare(name, path.relative_to(root), f"ONNX Runtime on the CPU, {kind} input",
                    np.concatenate([o[0] for o in outs]), ood, expected, films)  # fmt: skip


def _compare(
    name: str, file: Path, how: str, got: np.ndarray, ood: np.ndarray | None, expected: Expected, films: np.ndarray
) -> Check:
    same = got.shape == expected.probs.shape
    largest = float(np.max(np.abs(got.astype(np.float64) - expected.probs))) if same else float("inf")
    if expected.ood is None:
        ood_diff = None
    elif ood is None or ood.shape != expected.ood.shape:
        ood_diff = float("inf")  # the model has a gate and the file lost it
    else:
        ood_diff = float(np.max(np.abs(ood.astype(np.float64) - expected.ood)))
    return Check(name, str(file), how, largest, len(films), tuple(len(b) for b in batches(films)), ood_diff)
