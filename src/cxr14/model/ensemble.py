"""Ensembles of checkpoints: `--checkpoint A,B,C`, or a JSON manifest naming the members with their sha256.

An ensemble is one more model behind the one loader's interface (`model.loading.LoadedModel`): its classifier
takes the same uint8 batch as any other, scores it through every member (each at its own image size: the batch
arrives at the largest member's size and is resized on the device for the smaller ones, bilinear with
antialiasing), calibrates each member's logits with that member's own temperature, and averages the
probabilities. It hands back the logits of the averaged probabilities, so `LoadedModel.probabilities` (no
temperature of its own) gives the average exactly, and everything downstream - `predict`, evaluate, compare,
the web page - treats it like a single model. Heatmaps are the mean of the members' maps.

Thresholds: an ensemble's are chosen on validation like a single model's, by `cxr14 evaluate`, which writes
them into OUT/ensemble.json (a manifest); `predict` and `serve` given that manifest call findings with them.
Given as A,B,C (no manifest), an ensemble has no thresholds and calls no finding: the probabilities stand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr14.errors import UserError
from cxr14.files import write_text
from cxr14.model.create import DataConfig
from cxr14.model.decision import ValidationChoice, apply_temperature
from cxr14.model.inference import Scores

log = logging.getLogger(__name__)
#: The manifest's marker key and format version.
MANIFEST_KEY = "cxr14_ensemble"
MANIFEST_VERSION = 1
MANIFEST_FILE = "ensemble.json"
#: Averaged probabilities are kept this far from 0 and 1 before their logit is taken (float32 logits).
EPS = 1e-7


def is_ensemble(spec: Path | str) -> bool:
    """Whether a --checkpoint value names an ensemble: comma-separated paths, or a manifest (a .json file that
    names its format; any other file is left to the checkpoint reader, which says what it is not)."""
    text = str(spec)
    if "," in text and not Path(text).exists():
        return True
    if not (text.endswith(".json") and Path(text).is_file()):
        return False
    with open(text, "rb") as f:
        return f'"{MANIFEST_KEY}"'.encode() in f.read(1 << 16)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_spec(spec: Path | str) -> tuple[list[Path], ValidationChoice | None, dict[str, Any]]:
    """(member paths, thresholds chosen on validation or None, the manifest's record) of an ensemble spec.

    A manifest's members are checked against their sha256 before anything is loaded.
    """
    text = str(spec)
    if not text.endswith(".json"):
        members = [Path(p.strip()) for p in text.split(",") if p.strip()]
        return _at_least_two(members, text), None, {}
    path = Path(text)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"Cannot read the ensemble manifest {path} ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(manifest, dict) or manifest.get(MANIFEST_KEY) != MANIFEST_VERSION:
        raise UserError(
            f"{path} is not a cxr14 ensemble manifest (a JSON object with \"{MANIFEST_KEY}\": {MANIFEST_VERSION} and "
            f"\"members\": [{{\"path\": ..., \"sha256\": ...}}, ...]); `cxr14 evaluate --checkpoint A,B` writes one."
        )
    members = []
    for i, entry in enumerate(manifest.get("members") or []):
        if not isinstance(entry, dict) or "path" not in entry:
            raise UserError(f"{path}: member {i + 1} has no \"path\".")
        member = Path(entry["path"]) if Path(entry["path"]).is_absolute() else path.parent / entry["path"]
        if not member.exists():
            raise UserError(f"{path}: member {i + 1}, {member}, does not exist.")
        expected = entry.get("sha256")
        if expected is not None and member.is_file() and sha256_of(member) != expected:
            raise UserError(
                f"{path}: member {i + 1}, {member}, is not the file the manifest names: its sha256 is "
                f"{sha256_of(member)}, the manifest says {expected}. The checkpoint was replaced or damaged; "
                f"restore it, or make a new manifest with `cxr14 evaluate --checkpoint A,B,...`."
            )
        members.append(member)
    stored = manifest.get("thresholds")
    choice = ValidationChoice.from_json({"thresholds": stored}) if stored is not None else None
    return _at_least_two(members, text), choice, manifest


def _at_least_two(members: list[Path], spec: str) -> list[Path]:
    if len(members) < 2:
        raise UserError(f"--checkpoint {spec}: an ensemble needs two or more checkpoints (A,B or a manifest).")
    return members


class EnsembleClassifier:
    """uint8 [B, 1, S, S] -> logits of the members' averaged calibrated probabilities, [B, K] float64 on the CPU."""

    def __init__(self, members: Sequence[Any], size: int) -> None:
        self.members = list(members)  # LoadedModel each
        self.size = size
        self.device = torch.device("cpu")  # where batches are handed over; each member moves them itself

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.run(images).logits

    @torch.no_grad()
    def run(self, images: torch.Tensor, features: bool = False) -> Scores:
        """(logits of the mean probability, the largest of the members' ood_scores: unusual to any member is
        unusual; None when no member has a gate)."""
        if features:
            raise UserError("A gate is fitted for one model at a time: run cxr14 fit_gate on each member.")
        total, oods = None, []
        for m in self.members:
            scores = m.classifier.run(self._resized(images, m.data_config.image_size))
            # float64 from here on: the average and its logit keep the members' rankings to the last digit
            probs = apply_temperature(scores.logits.double(), m.calibration.temperature if m.calibration else None)
            total = probs.cpu() if total is None else total + probs.cpu()
            if scores.ood is not None:
                oods.append(scores.ood.float().cpu())
        mean = (total / len(self.members)).clamp(EPS, 1 - EPS)
        ood = torch.stack(oods).amax(dim=0) if oods else None
        return Scores(torch.logit(mean), ood, None)  # float64 logits: LoadedModel.probabilities gives the mean back

    def _resized(self, images: torch.Tensor, size: int) -> torch.Tensor:
        """The batch at a member's own size (exactly the batch when the sizes agree)."""
        if images.shape[-1] == size:
            return images
        x = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
        return x.round().clamp(0, 255).to(torch.uint8)


def combine(spec: Path | str, members: Sequence[Any], choice: ValidationChoice | None) -> tuple[
    EnsembleClassifier, DataConfig, dict[str, Any]
]:  # fmt: skip
    """(classifier, data config, card) of loaded members that share one label set."""
    labels = [tuple(m.card["labels"]) for m in members]
    if len(set(labels)) > 1:
        raise UserError(
            f"--checkpoint {spec}: the members predict different label sets "
            f"({'; '.join(map(', '.join, set(labels)))}); an ensemble averages the same findings, so its members must "
            f"share their labels."
        )
    if choice is not None and len(choice.thresholds) != len(labels[0]):
        raise UserError(f"{spec}: {len(choice.thresholds)} thresholds for {len(labels[0])} findings.")
    size = max(m.data_config.image_size for m in members)
    first = members[0]
    data = DataConfig(size, first.data_config.in_chans, first.data_config.mean, first.data_config.std)
    config = {**(first.card.get("config") or {}), "image_size": size}
    card = {
        "checkpoint": str(spec),
        "model": "ensemble of " + " + ".join(f"{m.card['model']}@{m.data_config.image_size}" for m in members),
        "image_size": size,
        "in_chans": data.in_chans,
        "labels": list(labels[0]),
        "members": [{k: v for k, v in m.card.items() if k != "config"} for m in members],
        "thresholds_chosen_on": "validation (by cxr14 evaluate, stored in the manifest)" if choice else None,
        "config": config,
    }
    return EnsembleClassifier(members, size), data, card


def mean_heatmaps(members: Sequence[Any], pixels: np.ndarray, findings: Sequence[int]) -> np.ndarray:
    """[B, S, S]: the mean of the members' heatmaps, each made at its own size and resized to the batch's."""
    size = pixels.shape[-1]
    total = np.zeros(pixels.shape, dtype=np.float64)
    for m in members:
        own = m.data_config.image_size
        x = torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(1)
        if own != size:
            x = torch.nn.functional.interpolate(x.float(), size=(own, own), mode="bilinear", antialias=True)
            x = x.round().clamp(0, 255).to(torch.uint8)
        heat = torch.from_numpy(m.heatmaps(x[:, 0].numpy(), findings)).float().unsqueeze(1)
        if own != size:
            heat = torch.nn.functional.interpolate(heat, size=(size, size), mode="bilinear")
        total += heat[:, 0].numpy()
    return (total / len(members)).astype(np.float32)


def write_manifest(out: Path, members: Sequence[Path], choice: ValidationChoice, chosen_on: str) -> Path:
    """OUT/ensemble.json: the members (paths relative to OUT where they can be, with sha256) and the thresholds."""
    manifest = {
        MANIFEST_KEY: MANIFEST_VERSION,
        "members": [
            {"path": os.path.relpath(p.resolve(), out.resolve()), "sha256": sha256_of(p) if p.is_file() else None}
            for p in members
        ],
        "thresholds": choice.to_json()["thresholds"],
        "thresholds_chosen_on": chosen_on,
        "combination": "mean of the members' calibrated probabilities",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path = out / MANIFEST_FILE
    write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path
