"""How a model's logits become probabilities and calls: the temperature and thresholds chosen on validation.

`apply_temperature` is the one place where probabilities are made from logits, and `decide` the one decision
rule (`positive  <=>  probability >= threshold`); a `ValidationChoice` is what a checkpoint (and every export)
carries of them. Choosing them is judging's work (`judging.calibration.fit_temperature`,
`judging.thresholds.choose_on_validation`); every scoring path applies them through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import expit


def apply_temperature(logits: Any, temperature: Any = None) -> Any:
    """sigmoid(logits / T) per finding (plain sigmoid when T is None); numpy in numpy out, tensor in tensor out."""
    if isinstance(logits, torch.Tensor):
        z = logits if logits.dtype == torch.float64 else logits.float()  # float32, unless given float64
        if temperature is None:
            return torch.sigmoid(z)
        return torch.sigmoid(z / torch.as_tensor(np.asarray(temperature), dtype=z.dtype, device=z.device))
    z = np.asarray(logits, dtype=np.float64)
    return expit(z if temperature is None else z / np.asarray(temperature, dtype=np.float64))


def decide(probs: Any, thresholds: Any) -> np.ndarray:
    """[N, K] bool: probability >= threshold, the one decision rule; a NaN threshold calls nothing positive."""
    p, th = np.asarray(probs, dtype=np.float64), np.asarray(thresholds, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return p >= th  # comparisons with NaN are False


@dataclass(frozen=True, eq=False)
class ValidationChoice:
    """What training learns on validation after the weights: per-finding temperature and thresholds.

    The thresholds apply to `apply_temperature(logits, temperature)` (plain sigmoid when temperature
    is None), so predict must compute probabilities the same way before `decide()`.
    """

    thresholds: np.ndarray
    temperature: np.ndarray | None
    rule: str = "youden"

    def to_json(self) -> dict[str, Any]:
        """Plain lists (None for NaN) for the checkpoint and metrics.json."""
        temps = None if self.temperature is None else [float(v) for v in self.temperature]
        return {
            "thresholds": [None if np.isnan(v) else float(v) for v in self.thresholds],
            "temperature": temps,
            "threshold_rule": self.rule,
            "decision": "probability >= threshold",
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> ValidationChoice:
        """The inverse of to_json (None back to NaN), for predict reading a checkpoint."""
        thresholds = np.array([np.nan if v is None else v for v in stored["thresholds"]], dtype=np.float64)
        temps = stored.get("temperature")
        temperature = None if temps is None else np.asarray(temps, dtype=np.float64)
        return cls(thresholds, temperature, stored.get("threshold_rule", "youden"))
