"""The one inference pass: uint8 batches -> `Classifier` (normalisation, autocast, forward) -> logits.

`predict` is the only code that turns a loader of films into logits: training's validation and test steps,
`cxr14 evaluate`, `cxr14 predict`, the web page and export's checks all score through it, with a
`Classifier` (or an ONNX Runtime session behind the same interface, `model.onnx_runtime`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from cxr14.data.transforms import DeviceTransform
from cxr14.model.device import Precision, model_device

if TYPE_CHECKING:
    from cxr14.model.gate import Gate


def progress_bar(loader: Iterable, desc: str, progress: bool, total: int | None = None, initial: int = 0) -> tqdm:
    return tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True, total=total, initial=initial)


class Classifier:
    """A model ready to score uint8 batches: normalisation, autocast and forward, on the model's device.

    Everything that turns pixels into logits goes through one of these and `predict`; the transform is built
    from the checkpoint's own data config, so a model is always fed what it was trained on. With a `gate`
    (`model.gate`), every batch also gets its ood_score, from the features the classifier's last layer reads.
    """

    def __init__(
        self, model: torch.nn.Module, transform: DeviceTransform, precision: Precision, gate: Gate | None = None
    ) -> None:
        self.model = model
        self.transform = transform
        self.precision = precision
        self.device = model_device(model)
        self.gate = gate

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 1, S, S] (any device) -> float32 logits [B, K] on the model's device."""
        return self.run(images)[0]

    @torch.no_grad()
    def run(self, images: torch.Tensor, features: bool = False) -> Scores:
        """(logits [B, K], ood_score [B] or None, pooled features [B, D] or None) for a uint8 batch.

        The features (what the classifier's last layer reads) are computed only when needed: a gate, or
        `features`; `logits_and_features` splits the forward pass there.
        """
        self.model.eval()
        x = self.transform(images.to(self.device, non_blocking=True))
        with self.precision.autocast():
            if self.gate is None and not features:
                return Scores(self.model(x).float(), None, None)
            logits, pooled = logits_and_features(self.model, x)
        pooled = pooled.float()
        ood = self.gate.torch_scores(pooled) if self.gate is not None else None
        return Scores(logits.float(), ood, pooled if features else None)


def logits_and_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled features) in one forward pass of a timm model, split before its last layer.

    timm's own split: `forward_head(..., pre_logits=True)` stops before the classifier that `get_classifier()`
    returns, so the logits equal `model(x)` (the export checks compare them). Used by the Classifier and by the
    ONNX graph, which computes the gate inside.
    """
    pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    return model.get_classifier()(pooled), pooled


class Scores(NamedTuple):
    """What one batch gives: logits, the gate's ood_score (None without a gate), features (when asked for)."""

    logits: torch.Tensor
    ood: torch.Tensor | None
    features: torch.Tensor | None


@dataclass(frozen=True)
class Predictions:
    """Logits of every readable image, with its dataset index and (when the data has them) its targets.

    With a gated model also each image's ood_score; with `predict(features=True)` its pooled features; and what
    the film reader found plainly wrong with a film (`data.films.unusual_film`), "" for most.
    """

    logits: np.ndarray  # float32 [N, K]
    index: np.ndarray  # int64 [N]: position in the dataset
    targets: np.ndarray | None  # int8 [N, K]: 1, 0 or UNKNOWN
    bad: tuple[tuple[int, str], ...]  # (dataset index, reason) of each image skipped as unreadable
    ood: np.ndarray | None = None  # float32 [N]
    features: np.ndarray | None = None  # float32 [N, D]
    notes: tuple[str, ...] = ()  # [N]

    @property
    def n_bad(self) -> int:
        return len(self.bad)


def predict(
    classifier: Any, loader: DataLoader, desc: str = "eval", progress: bool = True, features: bool = False
) -> Predictions:
    """Logits, dataset indices and targets for every readable image in `loader`, in loader order.

    `classifier` is a `Classifier` or anything with its `run` (an ONNX session, an ensemble). Logits stay on the
    device until the end (no sync per batch). Under torchrun each process scores its shard;
    `distributed.merge_predictions` joins them.
    """
    parts: list[Scores] = []
    targets, index, bad, notes = [], [], [], []
    for batch in progress_bar(loader, desc, progress):
        bad += loader.dataset.report_bad(batch["bad"])
        if batch["image"].numel() == 0:
            continue
        parts.append(classifier.run(batch["image"], features))
        index.append(batch["index"])
        notes += batch.get("note") or [""] * len(batch["index"])
        if "target" in batch:
            targets.append(batch["target"])
    if not parts:
        return Predictions(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), None, tuple(bad))

    def joined(tensors: list[torch.Tensor | None]) -> np.ndarray | None:
        return None if any(t is None for t in tensors) else torch.cat(tensors).cpu().numpy()  # type: ignore[arg-type]

    return Predictions(
        logits=joined([p.logits for p in parts]),
        index=torch.cat(index).numpy().astype(np.int64),
        targets=torch.cat(targets).numpy().astype(np.int8) if targets else None,
        bad=tuple(bad),
        ood=joined([p.ood for p in parts]),
        features=joined([p.features for p in parts]),
        notes=tuple(notes),
    )
