"""What a report is built from: an evaluation folder's files, read once, each optional part allowed to be missing.

The report reads only what `evaluate.write_outputs` wrote (metrics.json, SPLIT_predictions.csv, the heatmap
overlays named in metrics["localisation"]["gallery"]) and the training history (metrics.csv of the run folder),
so it can be rebuilt later from the folder alone, without the model, the images or torch.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxr14.errors import UserError


def label_names(metrics: dict[str, Any]) -> list[str]:
    """The findings an evaluation scored, in order (metrics.json's "labels"; older files: its per_class keys)."""
    return list(metrics.get("labels") or metrics.get("per_class") or [])


IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass(frozen=True)
class Predictions:
    """Per-image probabilities and targets (1/0/UNKNOWN) [N, K] in the label set's order, from
    SPLIT_predictions.csv."""

    probs: np.ndarray
    targets: np.ndarray


@dataclass(frozen=True)
class Part:
    """An optional input: its value, or None with the reason it is missing (shown in its section)."""

    value: Any
    source: Path | None
    missing: str = ""


@dataclass(frozen=True)
class ReportInputs:
    folder: Path
    metrics: dict[str, Any]
    predictions: Part  # Predictions
    history: Part  # list[dict[str, float | None]], one row per epoch


def load_inputs(folder: Path, history: Path | None = None) -> ReportInputs:
    """metrics.json (required), the predictions and the training history (each optional) of an evaluation folder."""
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise UserError(
            f"{folder} holds no metrics.json: it is not an evaluation folder (made by `cxr14 evaluate` "
            "or a training run's test step). Point the report at such a folder."
        ) from err
    except (OSError, ValueError) as err:
        raise UserError(f"Could not read {path}: {err}. Run the evaluation again to rewrite it.") from err
    if not isinstance(metrics, dict) or "per_class" not in metrics:
        raise UserError(f"{path} is not an evaluation's metrics.json (no per_class); run the evaluation again.")
    if (metrics.get("model") or {}).get("members") and history is None:
        history_part = Part(None, None, "An ensemble: each member's training history is in its own run folder.")
    else:
        history_part = read_history(history_candidates(folder, metrics, history))
    return ReportInputs(folder, metrics, read_predictions(folder, metrics), history_part)


def read_predictions(folder: Path, metrics: dict[str, Any]) -> Part:
    """SPLIT_predictions.csv as arrays; a missing or unreadable file becomes a reason instead."""
    path = folder / f"{metrics.get('split', 'test')}_predictions.csv"
    if not path.is_file():
        return Part(None, None, f"{path.name} is not in the evaluation folder.")
    try:
        frame = pd.read_csv(path)
        names = label_names(metrics)
        probs = frame[list(names)].to_numpy(dtype=np.float64)
        targets = frame[[f"true_{name}" for name in names]].to_numpy(dtype=np.int64)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as err:
        return Part(None, path, f"{path.name} could not be read ({err}).")
    return Part(Predictions(probs, targets), path)


def history_candidates(folder: Path, metrics: dict[str, Any], given: Path | None) -> list[Path]:
    """Where the training run's metrics.csv may be: given, else in the folder (a run folder), else by the checkpoint.

    An evaluation folder's run folder is its checkpoint's folder; a relative checkpoint path is tried from the
    current directory (where the evaluation ran) and, when the folder sits inside the run folder as
    `cxr14 evaluate` puts it by default, from the folder's parent.
    """
    if given is not None:
        return [given]
    candidates = [folder / "metrics.csv"]
    checkpoint = (metrics.get("model") or {}).get("checkpoint")
    if checkpoint:
        candidates.append(Path(checkpoint).parent / "metrics.csv")
        if (folder.parent / Path(checkpoint).name).is_file():
            candidates.append(folder.parent / "metrics.csv")
    return candidates


def read_history(candidates: list[Path]) -> Part:
    """The first existing metrics.csv, rows with numbers as floats (None for empty cells); else the reason."""
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        return Part(None, None, f"No training history: no metrics.csv at {', '.join(map(str, candidates))}.")
    try:
        with path.open(newline="") as f:
            rows = [{k: _number(v) for k, v in row.items() if k} for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return Part(None, path, f"{path} could not be read ({err}).")
    if not rows or "epoch" not in rows[0]:
        return Part(None, path, f"{path} holds no epoch rows.")
    return Part(rows, path)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def read_gallery_image(folder: Path, relative: str) -> tuple[bytes, str] | None:
    """(bytes, MIME type) of an overlay named in the gallery, or None when absent, not an image or outside `folder`."""
    root = folder.resolve()
    path = (root / relative).resolve()
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None or not path.is_relative_to(root) or not path.is_file():
        return None
    return path.read_bytes(), mime
