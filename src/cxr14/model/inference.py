"""The one inference pass: uint8 batches -> `Classifier` (normalisation, autocast, forward) -> logits.

`predict` is the only code that turns a loader of films into logits: training's validation and test steps,
`cxr14 evaluate`, `cxr14 predict`, the web page and export's checks all score through it, with a
`Classifier` (or an ONNX Runtime session behind the same interface, `model.onnx_runtime`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from cxr14.data.transforms import DeviceTransform
from cxr14.model.device import Precision, model_device


def progress_bar(loader: Iterable, desc: str, progress: bool, total: int | None = None, initial: int = 0) -> tqdm:
    return tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True, total=total, initial=initial)


class Classifier:
    """A model ready to score uint8 batches: normalisation, autocast and forward, on the model's device.

    Everything that turns pixels into logits goes through one of these and `predict`; the transform is built
    from the checkpoint's own data config, so a model is always fed what it was trained on.
    """

    def __init__(self, model: torch.nn.Module, transform: DeviceTransform, precision: Precision) -> None:
        self.model = model
        self.transform = transform
        self.precision = precision
        self.device = model_device(model)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 1, S, S] (any device) -> float32 logits [B, 14] on the model's device."""
        self.model.eval()
        with self.precision.autocast():
            return self.model(self.transform(images.to(self.device, non_blocking=True))).float()


@dataclass(frozen=True)
class Predictions:
    """Logits of every readable image, with its dataset index and (when the data has them) its targets."""

    logits: np.ndarray  # float32 [N, 14]
    index: np.ndarray  # int64 [N]: position in the dataset
    targets: np.ndarray | None  # uint8 [N, 14]
    bad: tuple[tuple[int, str], ...]  # (dataset index, reason) of each image skipped as unreadable

    @property
    def n_bad(self) -> int:
        return len(self.bad)


def predict(classifier: Classifier, loader: DataLoader, desc: str = "eval", progress: bool = True) -> Predictions:
    """Logits, dataset indices and targets for every readable image in `loader`, in loader order.

    Logits stay on the device until the end (no sync per batch). Under torchrun each process scores its shard;
    `distributed.merge_predictions` joins them.
    """
    logits, targets, index, bad = [], [], [], []
    for batch in progress_bar(loader, desc, progress):
        bad += loader.dataset.report_bad(batch["bad"])
        if batch["image"].numel() == 0:
            continue
        logits.append(classifier(batch["image"]))
        index.append(batch["index"])
        if "target" in batch:
            targets.append(batch["target"])
    if not logits:
        return Predictions(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), None, tuple(bad))
    return Predictions(
        logits=torch.cat(logits).cpu().numpy(),
        index=torch.cat(index).numpy().astype(np.int64),
        targets=torch.cat(targets).numpy().astype(np.uint8) if targets else None,
        bad=tuple(bad),
    )
