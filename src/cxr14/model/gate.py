"""The out-of-distribution gate: is this film like the films the model was trained on?

A classifier answers every input with confident numbers, a photograph or a lateral view included. The gate is
fitted with the model and stored in it. It reads statistics of how the film looks at several scales: for a few of
the model's stages (`model.inference.gate_stages`), each channel's spread over the image and its means on a 2 x 2
grid (`logits_and_features`). Each part is reduced to at most PCA_DIMS principal components of the training
films' and summarised by their Ledoit-Wolf shrinkage covariance (scikit-learn); a film's distance from the
training films is the mean over the parts of its Mahalanobis distance divided by the training films' median one
(so that every part weighs alike, whatever its width). Its `ood_score` is that distance over the threshold:
above 1 it is unusual.

Why several stages and not the pooled features the last layer reads (what the gate of cxr14 0.1 used, Lee et al.
2018's observation): those summarise what the model decides with and are blind to what it never had to tell
apart. A model trained on children's films put adults' films next to children's there, and flagged 26% of 1,000
adult films; the earlier stages' statistics flag about 60% (`benchmarks/ood.py`, README). k-nearest-neighbour
distances on normalised features (Sun et al. 2022) did worse on these films.

The threshold: the 99th percentile of the training films' distances, scaled by how much farther the validation
films lie (the ratio of their medians). A percentile of the validation films alone, as before, is an order
statistic of a few dozen films in a small set: with 30 validation films the share of new in-distribution films
flagged spread from 0% to 11%; the training films' tail, with the validation films' median for the correction,
keeps it near 1% whatever the validation size (README).

The statistics travel with the model: best_model.pth["gate"], the hf export's config.json, the ONNX graph
(a third output, computed inside). `Gate.scores` is the one scoring function; `Gate.torch_scores` is the same
arithmetic on the device (and inside the ONNX graph). A gate of cxr14 0.1 (one part: the pooled features,
its threshold the validation films' 99th percentile) still loads and scores as it did.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cxr14.errors import UserError

log = logging.getLogger(__name__)
METHOD = ("mahalanobis per part (stage channel spreads and 2x2-grid means, at most 64 principal components, "
          "Ledoit-Wolf), the mean of the parts' distances over their training medians")  # fmt: skip
METHOD_V1 = "mahalanobis, Ledoit-Wolf covariance of the training films' pooled features"
THRESHOLD_RULE = "the training films' 99th percentile, times the validation films' median over the training films'"
QUANTILE = 0.99
#: Validation films needed to set the threshold: their median corrects the training films' tail.
MIN_VALIDATION = 10
#: Training films the statistics are fitted on at most (a seeded sample beyond that: enough for a covariance).
MAX_FIT = 20000
#: The widest a part is kept: wider ones are projected on their first principal components (the statistics of a
#: large model's stages would otherwise weigh megabytes, for little gain: with 64 components 59.8% of the adult
#: films were flagged, with every column 60.5%).
PCA_DIMS = 64


@dataclass(frozen=True, eq=False)
class Part:
    """One group of feature columns: their mean, projection, precision and the training films' median distance."""

    name: str
    start: int
    stop: int
    mean: np.ndarray  # float64 [w]
    projection: np.ndarray  # float64 [w, k]
    precision: np.ndarray  # float64 [k, k]
    scale: float
    #: The statistics as float32 tensors, per device: made once, not on every batch.
    _on: dict[str, tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False)

    def distances(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64)[:, self.start : self.stop] - self.mean) @ self.projection
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", z, self.precision, z), 0.0)) / self.scale

    def torch_distances(self, features: torch.Tensor) -> torch.Tensor:
        key = str(features.device)
        if key not in self._on and not (torch.jit.is_tracing() or torch.compiler.is_compiling()):  # export: constants
            self._on[key] = tuple(torch.as_tensor(a, dtype=torch.float32, device=features.device)
                                  for a in (self.mean, self.projection, self.precision))  # fmt: skip
        mean, projection, precision = self._on.get(key) or tuple(
            torch.as_tensor(a, dtype=torch.float32, device=features.device)
            for a in (self.mean, self.projection, self.precision))  # fmt: skip
        z = (features[:, self.start : self.stop].float() - mean) @ projection
        return ((z @ precision) * z).sum(dim=1).clamp_min(0.0).sqrt() / self.scale

    def to_state(self) -> dict[str, Any]:
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

        return {"name": self.name, "start": self.start, "stop": self.stop, "mean": t(self.mean), "projection":
                t(self.projection), "precision": t(self.precision), "scale": float(self.scale)}  # fmt: skip


@dataclass(frozen=True, eq=False)
class Gate:
    """The parts' statistics and the threshold of their combined distance."""

    parts: tuple[Part, ...]
    threshold: float
    n_fit: int
    n_validation: int
    quantile: float = QUANTILE
    method: str = METHOD
    threshold_rule: str = THRESHOLD_RULE

    @property
    def dim(self) -> int:
        """The feature columns the gate reads (the features must be at least this wide)."""
        return max(p.stop for p in self.parts)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """[N] each film's distance from the training films: the mean over the parts (1 is a typical film's)."""
        return np.mean([p.distances(features) for p in self.parts], axis=0)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """[N] ood_score = distance / threshold: above 1, the film is unlike the training films."""
        return self.distances(features) / self.threshold

    def torch_scores(self, features: torch.Tensor) -> torch.Tensor:
        """`scores` on a float tensor [B, F], on its device (and traceable into an ONNX graph)."""
        total = sum(p.torch_distances(features) for p in self.parts)
        return total / (len(self.parts) * self.threshold)

    def to_state(self) -> dict[str, Any]:
        """For a checkpoint: tensors and builtins only (torch.load(weights_only=True) reads it)."""
        return {"version": 2, "parts": [p.to_state() for p in self.parts], "threshold": float(self.threshold),
                "n_fit": self.n_fit, "n_validation": self.n_validation, "quantile": self.quantile,
                "method": self.method, "threshold_rule": self.threshold_rule}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """For an exported config.json: the same fields as plain lists."""
        state = self.to_state()
        parts = [{k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in p.items()} for p in state["parts"]]
        return {**state, "parts": parts}

    def summary(self) -> dict[str, Any]:
        """What a model card says of the gate (no statistics)."""
        return {"method": self.method, "threshold": self.threshold, "threshold_rule": self.threshold_rule,
                "quantile": self.quantile, "n_fit": self.n_fit, "n_validation": self.n_validation,
                "features": self.dim, "parts": [p.name for p in self.parts]}  # fmt: skip


def feature_dim(model: torch.nn.Module) -> int:
    """How many feature columns `logits_and_features` gives for this model (a gate may read no more)."""
    from cxr14.model.inference import feature_layout

    return sum(width for _, width in feature_layout(model))


def from_state(state: Any, source: str, feature_dim: int | None = None) -> Gate:
    """A Gate from `to_state`'s or `to_json`'s dict (or cxr14 0.1's one-part form), checked: one line naming the
    file if it is damaged, or if it reads more feature columns than the model gives (`feature_dim`)."""
    try:
        parts = tuple(_part(p) for p in state["parts"]) if "parts" in state else (_v1_part(state),)
        threshold = float(state["threshold"])
        gate = Gate(parts, threshold, int(state["n_fit"]), int(state["n_validation"]),
                    float(state.get("quantile", QUANTILE)), str(state.get("method", METHOD_V1)),
                    str(state.get("threshold_rule", "the validation films' 99th percentile")))  # fmt: skip
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UserError(f"{source}: the out-of-distribution gate's statistics are damaged ({exc!r}).") from exc
    for p in gate.parts:
        w, k = p.projection.shape
        if (p.stop - p.start, w) != (len(p.mean), len(p.mean)) or p.precision.shape != (k, k) or not (
                p.scale > 0 and np.isfinite(p.precision).all() and np.isfinite(p.projection).all()):  # fmt: skip
            raise UserError(f"{source}: the out-of-distribution gate's statistics are damaged (part {p.name!r}: mean "
                            f"of {len(p.mean)}, projection {p.projection.shape}, precision {p.precision.shape}).")
    if not (threshold > 0 and np.isfinite(threshold)):
        raise UserError(f"{source}: the out-of-distribution gate's statistics are damaged (threshold {threshold}).")
    if feature_dim is not None and gate.dim > feature_dim:
        raise UserError(f"{source}: the out-of-distribution gate reads {gate.dim} features, but the model gives "
                        f"{feature_dim}: it belongs to another model.")  # fmt: skip
    return gate


def _part(p: dict[str, Any]) -> Part:
    def a(v: Any) -> np.ndarray:
        return np.asarray(v, dtype=np.float64)

    projection = a(p["projection"])
    return Part(str(p["name"]), int(p["start"]), int(p["stop"]), a(p["mean"]).reshape(-1),
                projection.reshape(len(projection), -1), a(p["precision"]), float(p["scale"]))  # fmt: skip


def _v1_part(state: dict[str, Any]) -> Part:
    """cxr14 0.1's gate: the pooled features (the first columns), no projection, the distance itself."""
    mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
    precision = np.asarray(state["precision"], dtype=np.float64)
    if precision.shape != (len(mean), len(mean)):
        raise ValueError(f"mean of {len(mean)}, precision {precision.shape}")
    return Part("pooled features", 0, len(mean), mean, np.eye(len(mean)), precision, 1.0)


def fit(train_features: np.ndarray, val_features: np.ndarray, layout: Sequence[tuple[str, int]]) -> Gate | None:
    """The gate from training and validation features (`layout`: the features' parts, names and widths); None (and
    a warning) when validation is too small. The pooled features are used only when the model has no stages."""
    from sklearn.covariance import LedoitWolf

    if len(val_features) < MIN_VALIDATION:
        log.warning(
            "out-of-distribution gate not fitted: %d validation films, and correcting its threshold takes at least "
            "%d; predictions from this model will say the check is absent", len(val_features), MIN_VALIDATION,
        )  # fmt: skip
        return None
    bounds = np.cumsum([0, *(w for _, w in layout)])
    chosen = [(name, int(bounds[i]), int(bounds[i + 1])) for i, (name, _) in enumerate(layout)]
    chosen = [c for c in chosen if c[0] != "pooled features"] or chosen
    train = np.asarray(train_features, dtype=np.float64)
    parts = []
    for name, start, stop in chosen:
        x = train[:, start:stop]
        mean = x.mean(axis=0)
        projection = _principal_axes(x - mean)
        estimate = LedoitWolf(assume_centered=True).fit((x - mean) @ projection)
        precision = np.linalg.pinv(estimate.covariance_, hermitian=True)
        probe = Part(name, start, stop, mean, projection, precision, 1.0)
        parts.append(Part(name, start, stop, mean, projection, precision, float(np.median(probe.distances(train)))))
    probe = Gate(tuple(parts), 1.0, len(train), len(val_features))
    threshold = threshold_from(probe.distances(train), probe.distances(val_features))
    gate = Gate(tuple(parts), threshold, len(train), len(val_features))
    log.info("out-of-distribution gate: %d parts (%s) of %d training films, threshold %.3f (%s, %d validation films)",
             len(parts), ", ".join(p.name for p in parts), len(train), gate.threshold, THRESHOLD_RULE,
             len(val_features))  # fmt: skip
    return gate


def threshold_from(on_train: np.ndarray, on_val: np.ndarray) -> float:
    """THRESHOLD_RULE: the training films' QUANTILE, scaled by the validation films' median over the training
    films' (the training films lie a little closer: the statistics were fitted on them)."""
    return max(float(np.quantile(on_train, QUANTILE) * np.median(on_val) / np.median(on_train)), 1e-12)


def _principal_axes(centred: np.ndarray) -> np.ndarray:
    """[w, k]: the identity when the part is narrow, else its first PCA_DIMS principal axes."""
    if centred.shape[1] <= PCA_DIMS:
        return np.eye(centred.shape[1])
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:PCA_DIMS].T
