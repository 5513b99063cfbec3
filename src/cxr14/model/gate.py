"""The out-of-distribution gate: is this film like the films the model was trained on?

A classifier answers every input with confident numbers, a photograph or a lateral view included. The gate is
fitted with the model and stored in it: the pooled penultimate features (what the classifier's last layer
reads) of the training films, summarised by their mean and a Ledoit-Wolf shrinkage covariance (scikit-learn),
give each new film a Mahalanobis distance; the threshold is the 99th percentile of the *validation* films'
distances (films the fit never saw, so about 1% of in-distribution films are flagged by design). A film's
`ood_score` is its distance over the threshold: above 1 it is unusual.

Why Mahalanobis with shrinkage: it needs no second network (torchxrayvision ships an autoencoder for this) and no
outliers to train on, it reads the features the decision is made from, and Ledoit-Wolf keeps the covariance
invertible when the features (320 for convnext_atto, 1,024 for convnext_base) outnumber the training films of a
small set. benchmarks/ood.py sets it against the energy score of the logits.

The statistics travel with the model: best_model.pth["gate"], the hf export's config.json, the ONNX graph
(a third output, computed inside). `Gate.scores` is the one scoring function; `Gate.torch_scores` is the same
arithmetic on the device (and inside the ONNX graph).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cxr14.errors import UserError

log = logging.getLogger(__name__)
METHOD = "mahalanobis, Ledoit-Wolf covariance of the training films' pooled features"
QUANTILE = 0.99
#: Validation films needed to set the threshold. Below about 100 the 99th percentile is close to the largest
#: validation distance (fewer in-distribution films flagged than 1%, at some cost in sensitivity); below 30 even
#: that is too noisy to rely on, and no gate is fitted.
MIN_VALIDATION = 30
#: Training films the statistics are fitted on at most (a seeded sample beyond that: enough for a covariance).
MAX_FIT = 20000


@dataclass(frozen=True, eq=False)
class Gate:
    """Mean and precision of the training features, and the validation threshold of the distance."""

    mean: np.ndarray  # float64 [D]
    precision: np.ndarray  # float64 [D, D], the inverse of the shrunk covariance
    threshold: float  # the QUANTILE of the validation films' distances
    n_fit: int
    n_validation: int
    quantile: float = QUANTILE
    method: str = METHOD

    @property
    def dim(self) -> int:
        return len(self.mean)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """[N] Mahalanobis distance of each feature row from the training mean."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", centred, self.precision, centred), 0.0))

    def scores(self, features: np.ndarray) -> np.ndarray:
        """[N] ood_score = distance / threshold: above 1, the film is unlike the training films."""
        return self.distances(features) / self.threshold

    def torch_scores(self, features: torch.Tensor) -> torch.Tensor:
        """`scores` on a float tensor [B, D], on its device (and traceable into an ONNX graph)."""
        mean = torch.as_tensor(self.mean, dtype=torch.float32, device=features.device)
        precision = torch.as_tensor(self.precision, dtype=torch.float32, device=features.device)
        centred = features.float() - mean
        squared = ((centred @ precision) * centred).sum(dim=1).clamp_min(0.0)
        return squared.sqrt() / self.threshold

    def to_state(self) -> dict[str, Any]:
        """For a checkpoint: tensors and builtins only (torch.load(weights_only=True) reads it)."""
        return {"mean": torch.from_numpy(self.mean.astype(np.float32)),
                "precision": torch.from_numpy(self.precision.astype(np.float32)), "threshold": float(self.threshold),
                "n_fit": self.n_fit, "n_validation": self.n_validation, "quantile": self.quantile,
                "method": self.method}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """For an exported config.json: the same fields as plain lists."""
        state = self.to_state()
        return {**state, "mean": state["mean"].tolist(), "precision": state["precision"].tolist()}

    def summary(self) -> dict[str, Any]:
        """What a model card says of the gate (no statistics)."""
        return {"method": self.method, "threshold": self.threshold, "quantile": self.quantile, "n_fit": self.n_fit,
                "n_validation": self.n_validation, "features": self.dim}  # fmt: skip


def feature_dim(model: torch.nn.Module) -> int | None:
    """How many features the model's last layer reads (what a gate for it must have), when timm says."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return getattr(head, "in_features", None)


def from_state(state: Any, source: str, feature_dim: int | None = None) -> Gate:
    """A Gate from `to_state`'s or `to_json`'s dict, checked: one line naming the file if it is damaged."""
    try:
        mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
        precision = np.asarray(state["precision"], dtype=np.float64)
        threshold = float(state["threshold"])
        gate = Gate(mean, precision, threshold, int(state["n_fit"]), int(state["n_validation"]),
                    float(state.get("quantile", QUANTILE)), str(state.get("method", METHOD)))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{source}: the out-of-distribution gate's statistics are damaged ({exc!r}).") from exc
    d = gate.dim
    if precision.shape != (d, d) or not (threshold > 0 and np.isfinite(threshold)) or not np.isfinite(precision).all():
        raise UserError(f"{source}: the out-of-distribution gate's statistics are damaged (mean of {d}, precision "
                        f"{precision.shape}, threshold {threshold}).")  # fmt: skip
    if feature_dim is not None and d != feature_dim:
        raise UserError(f"{source}: the out-of-distribution gate is for {d} features, but the model gives "
                        f"{feature_dim}: it belongs to another model.")  # fmt: skip
    return gate


def fit(train_features: np.ndarray, val_features: np.ndarray) -> Gate | None:
    """The gate from training and validation features; None (and a warning) when validation is too small."""
    from sklearn.covariance import LedoitWolf

    if len(val_features) < MIN_VALIDATION:
        log.warning(
            "out-of-distribution gate not fitted: %d validation films, and setting its threshold (their %dth "
            "percentile) takes at least %d; predictions from this model will say the check is absent",
            len(val_features), round(100 * QUANTILE), MIN_VALIDATION,
        )  # fmt: skip
        return None
    estimate = LedoitWolf().fit(np.asarray(train_features, dtype=np.float64))
    precision = np.linalg.pinv(estimate.covariance_, hermitian=True)
    probe = Gate(estimate.location_, precision, 1.0, len(train_features), len(val_features))
    threshold = float(np.quantile(probe.distances(val_features), QUANTILE))
    gate = Gate(estimate.location_, precision, max(threshold, 1e-12), len(train_features), len(val_features))
    log.info("out-of-distribution gate: Mahalanobis (Ledoit-Wolf shrinkage %.3f) on %d training films' %d features, "
             "threshold %.2f = the %dth percentile of %d validation films", estimate.shrinkage_, len(train_features),
             gate.dim, gate.threshold, round(100 * QUANTILE), len(val_features))  # fmt: skip
    return gate
