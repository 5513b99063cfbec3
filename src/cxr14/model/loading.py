"""A trained model ready for new images: weights, data config, calibration and model card, from one file.

`evaluate`, `predict`, the web page and `export`'s checks all start here, so a checkpoint is read, rebuilt and
fed in one way only: `checkpoint.load` -> `checkpoint.model_from_checkpoint` -> a `Classifier` whose transform
comes from the checkpoint's own data config (a file that `cxr14 export` wrote - .onnx, or an hf folder - is
read here too, into the same interface). Probabilities are `apply_temperature(logits, T)` with the
temperature fitted on validation, and a finding is called when its probability reaches the threshold chosen
on validation (`decision.decide`): the same arithmetic for every caller.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cxr14.data.pipeline.transforms import DeviceTransform
from cxr14.model import cam, checkpoint, gate
from cxr14.model.create import DataConfig
from cxr14.model.decision import ValidationChoice, apply_temperature, decide
from cxr14.model.device import resolve_device, resolve_precision
from cxr14.model.inference import Classifier

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from cxr14.model.ensemble import EnsembleClassifier
    from cxr14.model.onnx_runtime import OnnxClassifier


@dataclass
class LoadedModel:
    """A classifier with what turns its logits into calls, and what describes it."""

    classifier: Classifier | OnnxClassifier | EnsembleClassifier  # the same interface: uint8 batch in, logits out
    data_config: DataConfig
    calibration: ValidationChoice | None  # thresholds and temperatures chosen on validation
    card: dict[str, Any]
    members: tuple[LoadedModel, ...] = ()  # an ensemble's members (its classifier averages them)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """[N, K] calibrated probabilities (plain sigmoid for a checkpoint without a temperature)."""
        return apply_temperature(logits, self.calibration.temperature if self.calibration else None)

    def calls(self, probs: np.ndarray) -> np.ndarray:
        """[N, K] bool: probability >= the validation threshold (nothing is called without thresholds)."""
        if self.calibration is None:
            return np.zeros(np.shape(probs), dtype=bool)
        return decide(probs, self.calibration.thresholds)

    def heatmaps(self, pixels: np.ndarray, findings: Sequence[int]) -> np.ndarray:
        """[B, S, S] in [0, 1]: where the model found each image's finding, for uint8 model-size films [B, S, S].

        HiResCAM through the classifier's own transform (cam.heatmaps); a PyTorch model only (see `explainable`).
        An ensemble's map is the mean of its members' maps.
        """
        if self.members:
            from cxr14.model.ensemble import mean_heatmaps

            return mean_heatmaps(self.members, pixels, findings)
        c = self.classifier
        x = torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(1).to(c.device)
        return cam.heatmaps(c.model, c.transform(x), findings)

    @property
    def explainable(self) -> bool:
        """Whether heatmaps can be made: they follow gradients through a PyTorch model (an ONNX graph has none)."""
        if self.members:
            return all(m.explainable for m in self.members)
        return isinstance(self.classifier, Classifier)

    @property
    def labels(self) -> tuple[str, ...]:
        """The findings the model's outputs are, in order: its own label set, from its checkpoint or export."""
        return tuple(self.card["labels"])

    @property
    def thresholds(self) -> list[float | None]:
        if self.calibration is None:
            return [None] * len(self.labels)
        return [None if np.isnan(t) else float(t) for t in self.calibration.thresholds]


def load_model(path: Path, device: str = "auto", precision: str = "auto") -> LoadedModel:
    """A trained model ready for films, on `device`, in eval mode, from any of the files cxr14 writes.

    A cxr14 checkpoint (best_model.pth); or what `cxr14 export` wrote from one: a .onnx file (run by ONNX
    Runtime, calibration from the graph's metadata) or an hf folder (timm's local-dir loader, calibration from
    its config.json). All three give the same probabilities for the same films. An ensemble (`A,B,C` or a
    manifest, see `model.ensemble`) loads each member through here and averages them.
    """
    from cxr14.model import ensemble

    if ensemble.is_ensemble(path):
        paths, choice, _ = ensemble.read_spec(path)
        members = tuple(load_model(p, device, precision) for p in paths)
        classifier, data, card = ensemble.combine(path, members, choice)
        return LoadedModel(classifier, data, choice, card, members)
    path = Path(path)
    dev = resolve_device(device)
    if path.suffix == ".onnx":
        from cxr14.model.onnx_runtime import load_onnx

        loaded = LoadedModel(*load_onnx(path, dev))
        if not loaded.classifier.has_gate:
            _say_no_gate(path)
        return loaded
    if path.is_dir():
        from cxr14.model.hf_folder import load_hf

        model, data, calibration, card, stored_gate = load_hf(path)
    else:
        state = checkpoint.load(path)
        model, data = checkpoint.model_from_checkpoint(state)
        stored = state.get("calibration")
        calibration = ValidationChoice.from_json(stored) if stored else None
        card = model_card(state, path)
        stored_gate = state.get("gate")
    found = gate.from_state(stored_gate, str(path), gate.feature_dim(model)) if stored_gate else None
    card["gate"] = found.summary() if found is not None else None
    if found is None:
        _say_no_gate(path)
    model.to(dev).eval()
    transform = DeviceTransform(data.mean, data.std, data.in_chans, None)
    classifier = Classifier(model, transform, resolve_precision(precision, dev), found)
    return LoadedModel(classifier, data, calibration, card)


def _say_no_gate(path: Path) -> None:
    fix = (f"`cxr14 fit_gate --checkpoint {path} --data_dir D` adds it" if path.suffix == ".pth" else
           "export it again from a checkpoint that has one (cxr14 fit_gate adds it to a checkpoint)")  # fmt: skip
    log.warning(
        "%s carries no out-of-distribution gate: films unlike the training data are not flagged (only plainly "
        "wrong ones: colour photographs, odd shapes, blank images); %s.", path, fix,
    )  # fmt: skip


def model_card(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """What a person needs to know about a model, for the report, the web page and exported model cards."""
    config = state.get("config", {})
    card: dict[str, Any] = {
        "checkpoint": str(path),
        "model": state["model_name"],
        "image_size": state["data_config"]["image_size"],
        "in_chans": state["data_config"]["in_chans"],
        "epoch": state.get("epoch"),
        "weights": state.get("weights", "model"),
        "validation_mean_auroc": state.get("best_metric"),
        "pretrained": config.get("pretrained"),
        "loss": config.get("loss"),
        "trained": _mtime(path),
        "labels": list(state["labels"]),
        "config": config,
    }
    metrics = path.parent / "metrics.json"
    if metrics.is_file():
        try:
            m = json.loads(metrics.read_text())
            card["test"] = {k: m.get(k) for k in ("mean_auroc", "mean_auroc_ci", "n_images", "n_patients", "split")}
            # For exported model cards: where the scored films came from, and each finding's AUROC.
            card["test"]["data"] = m.get("data")
            per_class = m.get("per_class") or {}
            card["test"]["auroc"] = {k: v.get("auroc") for k, v in per_class.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass  # a card without test figures is still a card
    return card


def _mtime(path: Path) -> str:
    return datetime.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
