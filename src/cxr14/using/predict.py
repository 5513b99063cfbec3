"""`cxr14 predict`: new films (PNG, JPEG, DICOM) -> batches -> model.inference.predict -> a row per film; CAMs.

Films are read in DataLoader workers (`films.read_film`, then the project's one resize), batched as uint8 and
scored through the same `predict` as training's test step and `evaluate`, with the checkpoint's own
data config, temperature and thresholds (`model.loading.load_model`). An unreadable file is skipped, named with
its reason, and counted; the others still get their rows. The web page calls `score_films` and
`heatmap` below, so it answers exactly what this command prints.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

from cxr14.config import PredictConfig
from cxr14.data.films.pixels import resize_gray
from cxr14.data.films.upload import Film, list_films, open_film, read_film, unusual_film
from cxr14.data.pipeline.dataset import XrayDataset, collate_skipping_bad
from cxr14.data.pipeline.loaders import usable_workers
from cxr14.errors import UserError
from cxr14.files import atomic_path, write_text
from cxr14.model import cam
from cxr14.model.inference import Predictions, predict
from cxr14.model.loading import LoadedModel, load_model

log = logging.getLogger(__name__)
#: Overlays are drawn on the film at most this size (a 3,000 px DICOM need not make a 3,000 px PNG).
OVERLAY_MAX = 1024


def to_model_size(film: np.ndarray, size: int) -> np.ndarray:
    """A decoded film (any size) as the model's uint8 (size, size) input, through the project's one resize."""
    return np.array(resize_gray(Image.fromarray(film), size))


class FilmSource:
    """An ImageSource over film files: decode (PNG/JPEG/DICOM), check what is cheap, resize to the model's size."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths = [str(p) for p in paths]
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> np.ndarray:
        return self.read_noted(i)[0]

    def read_noted(self, i: int) -> tuple[np.ndarray, str]:
        """The model-size pixels and what is plainly wrong with the film, from one decode."""
        film = open_film(self.paths[i])
        return to_model_size(film.pixels, self.size), unusual_film(film)

    def name(self, i: int) -> str:
        return self.paths[i]


class PixelSource:
    """An ImageSource over films already decoded in memory (an upload to the web page)."""

    def __init__(self, films: Sequence[Film], size: int) -> None:
        self.films = list(films)
        self.size = size

    def __len__(self) -> int:
        return len(self.films)

    def read(self, i: int) -> np.ndarray:
        return self.read_noted(i)[0]

    def read_noted(self, i: int) -> tuple[np.ndarray, str]:
        return to_model_size(self.films[i].pixels, self.size), unusual_film(self.films[i])

    def name(self, i: int) -> str:
        return f"image {i}"


def film_loader(source: FilmSource | PixelSource, batch_size: int, workers: int) -> DataLoader:
    """Unlabelled films as uint8 batches; unreadable ones come back flagged and are skipped, not fatal."""
    dataset = XrayDataset(source, np.zeros((len(source), 1), np.int8), skip_bad=True)  # unlabelled
    workers = min(usable_workers(workers), max(0, len(source) // batch_size))  # none for a handful of films
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping_bad)


def unusual_reason(note: str, ood: float | None) -> str | None:
    """Why a film is unusual, in words (None when it is not): the cheap check's reason, else the gate's."""
    if note:
        return note
    if ood is not None and ood > 1.0:
        return (f"unlike the films the model was trained on (ood_score {ood:.2f}; above 1 is beyond about the 99th "
                f"percentile of films like them)")  # fmt: skip
    return None


def rows(model: LoadedModel, names: Sequence[str], pred: Predictions) -> list[dict[str, Any]]:
    """One dict per film: its name, the calibrated probability of each of the model's findings, the findings at or
    above threshold, and whether it is unusual (the gate's ood_score, None without a gate; the reason). An unusual
    film's probabilities are given but none is called: the model was not made for such a film."""
    probs = model.probabilities(pred.logits)
    calls = model.calls(probs)
    ood = pred.ood if pred.ood is not None else [None] * len(names)
    notes = pred.notes or ("",) * len(names)
    out = []
    for name, row, called, score, note in zip(names, probs, calls, ood, notes, strict=True):
        score = None if score is None else round(float(score), 4)
        reason = unusual_reason(note, score)
        out.append({
            "file": name,
            "probabilities": {label: round(float(p), 6) for label, p in zip(model.labels, row, strict=True)},
            "findings": [] if reason else [label for label, c in zip(model.labels, called, strict=True) if c],
            "ood_score": score,
            "unusual": reason is not None,
            "reason": reason,
        })  # fmt: skip
    return out


def score_films(model: LoadedModel, films: Sequence[Film]) -> list[dict[str, Any]]:
    """Rows for films decoded in memory (the web page's path), through the same inference pass."""
    pred = predict(model.classifier, film_loader(PixelSource(films, model.data_config.image_size), len(films), 0),
                   progress=False)  # fmt: skip
    return rows(model, [f"image {i}" for i in pred.index], pred)


def heatmap(model: LoadedModel, film: np.ndarray, finding: int) -> np.ndarray:
    """[S, S] in [0, 1]: where the model found `finding` (an index into its labels) on one decoded film."""
    return model.heatmaps(to_model_size(film, model.data_config.image_size)[None], [finding])[0]


def overlay_stems(paths: Sequence[Path]) -> list[str]:
    """A file-name stem per film for its overlays; films with the same name in different folders get -2, -3..."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        stems.append(path.stem if seen[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}")
    return stems


def top_findings(model: LoadedModel, row: dict[str, Any], top: int) -> list[str]:
    """The `top` most probable of the model's findings in one row, most probable first."""
    probs = row["probabilities"]
    return sorted(model.labels, key=lambda label: probs[label], reverse=True)[:top]


def overlay_image(model: LoadedModel, film: np.ndarray, label: str) -> Image.Image:
    """One finding's heatmap over a decoded film, as RGB at most OVERLAY_MAX on its long side (--cam's PNGs and
    the DICOM Secondary Captures are this image)."""
    scale = min(1.0, OVERLAY_MAX / max(film.shape))
    shown = film if scale == 1.0 else np.array(Image.fromarray(film).resize(
        (round(film.shape[1] * scale), round(film.shape[0] * scale)), Image.Resampling.BILINEAR))  # fmt: skip
    return cam.overlay(shown, heatmap(model, film, model.labels.index(label)))


def write_overlays(model: LoadedModel, path: Path, stem: str, row: dict[str, Any], out: Path, top: int) -> list[Path]:
    """PNG overlays of the `top` most probable findings of one film: OUT/<stem>-<finding>.png."""
    film = read_film(path)
    written = []
    for label in top_findings(model, row, top):
        target = out / f"{stem}-{label}.png"
        with atomic_path(target) as tmp:
            overlay_image(model, film, label).save(tmp, format="PNG")
        written.append(target)
    return written


def format_csv(table: list[dict[str, Any]], labels: Sequence[str]) -> str:
    """file, a probability per label, findings (';'-joined), ood_score, unusual, reason: one line per film."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", *labels, "findings", "ood_score", "unusual", "reason"])
    for row in table:
        score = "" if row["ood_score"] is None else f"{row['ood_score']:.4f}"
        writer.writerow([row["file"], *(f"{row['probabilities'][k]:.6f}" for k in labels), ";".join(row["findings"]),
                         score, str(row["unusual"]).lower(), row["reason"] or ""])  # fmt: skip
    return buf.getvalue()


def format_json(table: list[dict[str, Any]]) -> str:
    """JSON Lines: one object per film, exactly what the web page's /api/predict returns for one upload."""
    return "".join(json.dumps(row) + "\n" for row in table)


def run_predict(cfg: PredictConfig) -> list[dict[str, Any]]:
    """`cxr14 predict`: score every film under cfg.paths and print or write the rows."""
    paths = list_films(cfg.paths)
    if not paths:
        raise UserError(f"No films (.png, .jpg, .jpeg, .dcm, .dicom) under {', '.join(map(str, cfg.paths))}.")
    model = load_model(cfg.checkpoint, cfg.device)
    if cfg.cam is not None and not model.explainable:
        raise UserError(
            f"--cam needs the PyTorch model, and {cfg.checkpoint} is an ONNX graph (no gradients to follow). Use the "
            f"best_model.pth, or the hf folder that `cxr14 export` wrote beside it."
        )
    loader = film_loader(FilmSource(paths, model.data_config.image_size), cfg.batch_size, cfg.num_workers)
    pred = predict(model.classifier, loader, desc="predict", progress=cfg.progress)
    for i, why in pred.bad:
        log.warning("skipped %s: %s", paths[i], why)
    if len(pred.index) == 0:
        raise UserError(f"None of the {len(paths)} file(s) could be read as a film; the reasons are above.")
    table = rows(model, [str(paths[i]) for i in pred.index], pred)
    unusual = [row for row in table if row["unusual"]]
    for row in unusual:
        log.warning("unusual: %s: %s", row["file"], row["reason"])
    skip = cfg.on_unusual == "skip"
    kept = [(i, row) for i, row in zip(pred.index, table, strict=True) if not (row["unusual"] and skip)]
    text = format_json([r for _, r in kept]) if cfg.json else format_csv([r for _, r in kept], model.labels)
    if cfg.out is not None:
        write_text(cfg.out, text)
    else:
        sys.stdout.write(text)
    if cfg.cam is not None:
        cfg.cam.mkdir(parents=True, exist_ok=True)
        stems = overlay_stems(paths)
        for i, row in kept:
            write_overlays(model, paths[i], stems[i], row, cfg.cam, cfg.cam_top)
        log.info("heatmap overlays of each film's top %d finding(s) in %s", cfg.cam_top, cfg.cam)
    log.info("%s", summary(len(table), len(unusual), pred.n_bad, cfg.on_unusual, model.card.get("gate") is not None))
    return [r for _, r in kept]


def summary(scored: int, unusual: int, bad: int, on_unusual: str, gated: bool) -> str:
    """The closing line: films scored, unusual ones and what was done with them, unreadable ones."""
    parts = [f"{scored} film(s) scored"]
    if unusual:
        done = "left out of the output (--on_unusual skip)" if on_unusual == "skip" else "flagged in the output"
        parts.append(f"{unusual} unusual ({done}; named above)")
    if not gated:
        parts.append("no out-of-distribution gate in this model: only the cheap checks ran")
    if bad:
        parts.append(f"{bad} unreadable file(s) skipped (named above)")
    return "; ".join(parts)
