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
from cxr14.labels import NUM_CLASSES
from cxr14.model import fields
from cxr14.model.loading import LoadedModel
from cxr14.model.onnx_runtime import INPUT, session

#: The largest difference of any probability from the checkpoint's that an export may show.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Check:
    """One exported file against the checkpoint."""

    name: str  # "hf", "onnx", "onnx float32"
    file: str  # relative to the export folder
    how: str  # how the file was read back
    largest_difference: float
    films: int
    batches: tuple[int, ...]

    @property
    def passed(self) -> bool:
        return bool(self.largest_difference <= TOLERANCE)  # NaN fails too

    def line(self) -> str:
        verdict = "ok" if self.passed else f"FAILED (more than {TOLERANCE:g})"
        sizes = " and ".join(map(str, self.batches))
        return (
            f"{self.name:13s} largest |probability difference| from the checkpoint: {self.largest_difference:.2e} "
            f"over {self.films} phantom films in batches of {sizes} ({self.how}): {verdict}"
        )

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "tolerance": TOLERANCE, "passed": self.passed}


def phantom_films(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, 1, size, size]: phantom chest films with random findings, drawn at the model's size."""
    rng = np.random.default_rng(seed)
    findings = (rng.random((n, NUM_CLASSES)) < 0.3).astype(np.uint8)
    return np.stack([render(f, size, rng) for f in findings])[:, None]


def batches(films: np.ndarray) -> list[np.ndarray]:
    """The whole set as one batch, then its first film alone."""
    return [films, films[:1]]


def reference(loaded: LoadedModel, films: np.ndarray) -> np.ndarray:
    """[sum of batch sizes, 14] probabilities from the checkpoint, through cxr14's own scoring path."""
    out = [loaded.probabilities(loaded.classifier(torch.from_numpy(b)).cpu().numpy()) for b in batches(films)]
    return np.concatenate(out)


def check_hf(folder: Path, root: Path, films: np.ndarray, expected: np.ndarray, device: torch.device) -> Check:
    """The folder as a timm user loads it: no cxr14 code between the files and the probabilities."""
    import timm

    model = timm.create_model(f"local-dir:{folder}", pretrained=True).to(device).eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    mean = torch.tensor(cfg["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"], device=device).view(1, -1, 1, 1)
    block = json.loads((folder / "config.json").read_text())[fields.KEY]
    temperature = torch.tensor(block["temperature"] or [1.0] * NUM_CLASSES, device=device)
    probs = []
    with torch.no_grad():
        for b in batches(films):
            x = (torch.from_numpy(b).to(device).float() / 255.0 - mean) / std
            logits = model(x.expand(-1, cfg["input_size"][0], -1, -1))
            probs.append(torch.sigmoid(logits / temperature).cpu().numpy())
    how = f"timm local-dir, torch on {device.type}"
    return _compare("hf", folder.relative_to(root), how, np.concatenate(probs), expected, films)


def check_onnx(path: Path, root: Path, films: np.ndarray, expected: np.ndarray) -> Check:
    """The graph as a deployer runs it: ONNX Runtime on the CPU, pixels in, "probabilities" out."""
    sess = session(path, torch.device("cpu"))
    kind = sess.get_inputs()[0].type
    dtype = np.uint8 if kind == "tensor(uint8)" else np.float32
    probs = [sess.run(["probabilities"], {INPUT: b.astype(dtype)})[0] for b in batches(films)]
    name = "onnx" if dtype == np.uint8 else "onnx float32"
    return _compare(name, path.relative_to(root), f"ONNX Runtime on the CPU, {kind} input", np.concatenate(probs),
                    expected, films)  # fmt: skip


def _compare(name: str, file: Path, how: str, got: np.ndarray, expected: np.ndarray, films: np.ndarray) -> Check:
    same = got.shape == expected.shape
    largest = float(np.max(np.abs(got.astype(np.float64) - expected))) if same else float("inf")
    return Check(name, str(file), how, largest, len(films), tuple(len(b) for b in batches(films)))
