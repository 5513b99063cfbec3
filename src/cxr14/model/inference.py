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

from cxr14.data.films.orientation import rotated_reasons
from cxr14.data.pipeline.transforms import DeviceTransform
from cxr14.model.device import Precision, model_device

if TYPE_CHECKING:
    from cxr14.model.gate import Gate


def progress_bar(loader: Iterable, desc: str, progress: bool, total: int | None = None, initial: int = 0) -> tqdm:
    return tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True, total=total, initial=initial)


class Classifier:
    """A model ready to score uint8 batches: normalisation, autocast and forward, on the model's device.

    Everything that turns pixels into logits goes through one of these and `predict`; the transform is built
    from the checkpoint's own data config, so a model is always fed what it was trained on. With a `gate`
    (`model.gate`), every batch also gets its ood_score, from the features of `logits_and_features`.
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

        The features (`logits_and_features`: what the last layer reads, and statistics of earlier stages) are
        computed only when needed: a gate, or `features`.
        """
        self.model.eval()
        x = self.transform(images.to(self.device, non_blocking=True))
        with self.precision.autocast():
            if self.gate is None and not features:
                return Scores(self.model(x).float(), None, None)
            logits, feats = logits_and_features(self.model, x)
        ood = self.gate.torch_scores(feats) if self.gate is not None else None
        return Scores(logits.float(), ood, feats if features else None)


#: How many of a model's stages before the last the gate reads (evenly spread when it has more), and the grid
#: each stage's channel means are taken on (2 x 2: where in the film a pattern sits, not only that it is there).
GATE_STAGES = 3
GRID = 2


def gate_stages(model: torch.nn.Module) -> list[int]:
    """The stages whose outputs the gate reads: up to GATE_STAGES of those before the last (none when timm cannot
    return a model's stages)."""
    info = getattr(model, "feature_info", None)
    if not hasattr(model, "forward_intermediates") or not info or len(info) < 2:
        return []
    before_last = len(info) - 1
    if before_last <= GATE_STAGES:
        return list(range(before_last))
    return sorted({round(i * (before_last - 1) / (GATE_STAGES - 1)) for i in range(GATE_STAGES)})


def feature_layout(model: torch.nn.Module) -> list[tuple[str, int]]:
    """(name, width) of each part of `logits_and_features`'s features, in order (widths from timm's feature_info)."""
    stages = gate_stages(model)
    channels = [int(model.feature_info[i]["num_chs"]) for i in stages]
    return [("pooled features", int(model.num_features)),
            *[(f"stage {i + 1} channel spreads", c) for i, c in zip(stages, channels, strict=True)],
            *[(f"stage {i + 1} channel means, {GRID}x{GRID} grid", c * GRID * GRID)
              for i, c in zip(stages, channels, strict=True)]]  # fmt: skip


def logits_and_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, features [B, F]) in one forward pass of a timm model, for the out-of-distribution gate.

    The features, as `feature_layout` names them: first the pooled features the last layer reads (timm's own
    split, `forward_head(..., pre_logits=True)`, so the logits equal `model(x)`: the export checks compare
    them; a gate of cxr14 0.1 reads these alone), then for the stages `gate_stages` picks, each channel's spread
    over the image and its means on a 2 x 2 grid: statistics of how the film looks at several scales, which
    tell apart films the last layer's pooled summary confuses (a child's film from an adult's). Used by the
    Classifier and by the ONNX graph, which computes the gate inside.
    """
    stages = gate_stages(model)
    if stages:
        final, maps = model.forward_intermediates(x, indices=stages)
    else:
        final, maps = model.forward_features(x), []
    pooled = model.forward_head(final, pre_logits=True)
    maps = [m.float() for m in maps]
    parts = [pooled.float(), *[m.std(dim=(2, 3)) for m in maps],
             *[torch.nn.functional.adaptive_avg_pool2d(m, GRID).flatten(1) for m in maps]]  # fmt: skip
    return model.get_classifier()(pooled), torch.cat(parts, dim=1)


class Scores(NamedTuple):
    """What one batch gives: logits, the gate's ood_score (None without a gate), features (when asked for)."""

    logits: torch.Tensor
    ood: torch.Tensor | None
    features: torch.Tensor | None


@dataclass(frozen=True)
class Predictions:
    """Logits of every readable image, with its dataset index and (when the data has them) its targets.

    With a gated model also each image's ood_score; with `predict(features=True)` its gate features; and what
    the film reader found plainly wrong with a film (`data.films.unusual_film`), "" for most.
    """

    logits: np.ndarray  # float32 [N, K]
    index: np.ndarray  # int64 [N]: position in the dataset
    targets: np.ndarray | None  # int8 [N, K]: 1, 0 or UNKNOWN
    bad: tuple[tuple[int, str], ...]  # (dataset index, reason) of each image skipped as unreadable
    ood: np.ndarray | None = None  # float32 [N]
    features: np.ndarray | None = None  # float32 [N, F], as `feature_layout` names them
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
    checks = getattr(loader.dataset, "checks_films", False)
    for batch in progress_bar(loader, desc, progress):
        bad += loader.dataset.report_bad(batch["bad"])
        if batch["image"].numel() == 0:
            continue
        parts.append(classifier.run(batch["image"], features))
        index.append(batch["index"])
        if checks:  # films a user brought (predict, the web page): is each one upright?
            notes += [n or r for n, r in zip(batch["note"], rotated_reasons(batch["image"]), strict=True)]
        else:
            notes += [""] * len(batch["index"])
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
