"""A model's findings against a dataset's labels: which outputs score which label, so that a model trained on one
dataset can be judged on another (external validation) with everything else unchanged.

`labels.match` gives the pairs (exact: the same finding by name or in another set's spelling; approximate, only
with --approximate: a group of the model's findings against one of the data's, its highest probability the
score). `align` turns the model's logits and the data's split into a split and logits of the scored labels only,
with the thresholds carried over (an approximate pair has none: its score is not what the threshold was chosen
for), and records what was mapped, how, and what was left out and why, for metrics.json and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.special import logit

from cxr14.data.splits import Split
from cxr14.errors import UserError
from cxr14.labels import match
from cxr14.model.decision import ValidationChoice, apply_temperature


@dataclass(frozen=True)
class Alignment:
    """The pairs scored, the data labels left out (with why), the model's outputs no label used."""

    pairs: tuple[tuple[str, tuple[str, ...], str], ...]  # (data label, model findings, "exact" / "approximate")
    left_out: dict[str, str]
    unused: tuple[str, ...]

    @property
    def identity(self) -> bool:
        return all(kind == "exact" and (label,) == model for label, model, kind in self.pairs) and not self.left_out

    def to_json(self) -> dict[str, Any]:
        return {
            "mapped": [{"data": label, "model": list(model), "how": kind} for label, model, kind in self.pairs],
            "left_out": self.left_out,
            "model_findings_unused": list(self.unused),
        }


def align(
    model_labels: tuple[str, ...], split: Split, logits: np.ndarray, calibration: ValidationChoice | None,
    approximate: bool,
) -> tuple[Split, np.ndarray, ValidationChoice | None, Alignment]:  # fmt: skip
    """The split and logits restricted to the data labels the model can score, in the data's order."""
    if tuple(model_labels) == tuple(split.label_names):
        pairs = tuple((n, (n,), "exact") for n in model_labels)
        return split, logits, calibration, Alignment(pairs, {}, ())
    found = match(model_labels, split.label_names, approximate)
    if not found:
        raise UserError(
            f"The model's findings ({', '.join(model_labels)}) and the data's labels ({', '.join(split.label_names)}) "
            f"share none{'' if approximate else ' exactly (--approximate adds the pairs that only roughly match)'}: "
            f"there is nothing to score. See the README's label map."
        )
    probs = apply_temperature(logits, calibration.temperature if calibration else None)
    cols = [split.label_names.index(label) for label, _, _ in found]
    scores = np.stack([probs[:, m].max(axis=1) for _, m, _ in found], axis=1)
    thresholds = np.array([calibration.thresholds[m[0]] if calibration is not None and kind == "exact" else np.nan
                           for _, m, kind in found])  # fmt: skip
    eps = 1e-12
    mapped_logits = logit(np.clip(scores, eps, 1 - eps))  # calibrated already: the temperature is 1 from here
    choice = ValidationChoice(thresholds, None) if calibration is not None else None
    names = tuple(label for label, _, _ in found)
    sub = replace(split, labels=split.labels[:, cols], label_names=names)
    used = {j for _, m, _ in found for j in m}
    left = {
        label: "no finding of the model corresponds" + ("" if approximate else " (exactly; --approximate also tries "
                                                        "the approximate correspondences)")
        for label in split.label_names if label not in names
    }  # fmt: skip
    pairs = tuple((label, tuple(model_labels[j] for j in m), kind) for label, m, kind in found)
    unused = tuple(m for j, m in enumerate(model_labels) if j not in used)
    return sub, mapped_logits, choice, Alignment(pairs, left, unused)
