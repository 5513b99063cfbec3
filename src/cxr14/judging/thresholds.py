"""Decision thresholds: chosen on validation when training ends, applied unchanged to test and to new images.

The rule everywhere (evaluate, predict, serve) is `positive  <=>  probability >= threshold`, in
`model.decision.decide()`. Thresholds are chosen by `choose_on_validation()` from validation logits; no function
here takes test data and returns a threshold, so "never chosen on test" holds by construction:
`operating_point()` only applies thresholds it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from cxr14.judging.calibration import fit_temperature
from cxr14.judging.metrics import as_arrays, defined_findings
from cxr14.model.decision import ValidationChoice, apply_temperature, decide


def youden_thresholds(targets: Any, probs: Any) -> np.ndarray:
    """[K] per finding the probability threshold maximising Youden's J = sensitivity + specificity - 1.

    Candidates are the distinct scores (scikit-learn's roc_curve, every point kept); among equal J
    the highest threshold wins (fewest positive calls). NaN where a finding has one class only:
    there is nothing to choose from, and `decide()` then calls no image positive for it.
    """
    t, p = as_arrays(targets, probs)
    out = np.full(t.shape[1], np.nan)
    for j in np.flatnonzero(defined_findings(t)):
        keep = t[:, j] >= 0  # the known labels only
        fpr, tpr, cut = roc_curve(t[keep, j], p[keep, j], drop_intermediate=False)
        j_stat = (tpr - fpr)[1:]  # cut[0] is +inf: "call nothing positive", not a usable threshold
        out[j] = cut[1:][int(np.argmax(j_stat))]
    return out


def choose_on_validation(val_targets: Any, val_logits: Any, calibrate: bool = True) -> ValidationChoice:
    """Fit the temperature (optional) and then the Youden thresholds on the calibrated validation probabilities."""
    t, z = as_arrays(val_targets, val_logits)
    temperature = fit_temperature(t, z) if calibrate else None
    return ValidationChoice(youden_thresholds(t, apply_temperature(z, temperature)), temperature)


@dataclass(frozen=True)
class FindingOperatingPoint:
    """Counts and rates of one finding at its threshold; None where a rate divides by zero."""

    threshold: float | None
    tp: int | None
    fp: int | None
    tn: int | None
    fn: int | None
    sensitivity: float | None
    specificity: float | None
    ppv: float | None
    npv: float | None
    f1: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OperatingPoints:
    per_class: dict[str, FindingOperatingPoint]

    def to_json(self) -> dict[str, Any]:
        return {"per_class": {name: row.to_json() for name, row in self.per_class.items()}}


def operating_point(targets: Any, probs: Any, thresholds: Any, names: Sequence[str]) -> OperatingPoints:
    """Sensitivity, specificity, PPV, NPV, F1 and TP/FP/TN/FN per finding at given thresholds, on the images
    whose label for the finding is known.

    A finding without a threshold (NaN) has no operating point: every field is None.
    """
    t, p = as_arrays(targets, probs)
    th = np.asarray(thresholds, dtype=np.float64)
    if th.shape != (t.shape[1],) or len(names) != t.shape[1]:
        raise ValueError(f"{th.shape} thresholds and {len(names)} names for {t.shape[1]} findings")
    called, actual = decide(p, th), t == 1
    per_class = {}
    for j, name in enumerate(names):
        if np.isnan(th[j]):
            per_class[name] = FindingOperatingPoint(*([None] * 10))
            continue
        known = t[:, j] >= 0
        tp = int((called[:, j] & actual[:, j] & known).sum())
        fp = int((called[:, j] & ~actual[:, j] & known).sum())
        fn = int((~called[:, j] & actual[:, j] & known).sum())
        tn = int(known.sum()) - tp - fp - fn
        per_class[name] = FindingOperatingPoint(
            float(th[j]), tp, fp, tn, fn, _ratio(tp, tp + fn), _ratio(tn, tn + fp), _ratio(tp, tp + fp),
            _ratio(tn, tn + fn), _ratio(2 * tp, 2 * tp + fp + fn),
        )  # fmt: skip
    return OperatingPoints(per_class)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None
