"""What a worker thread does with one upload: decode, score, and (when asked) a heatmap and the film itself.

Scoring is `predict.score_films` and the heatmap `predict.heatmap`: the code `cxr14 predict` runs, so the
row is the one `cxr14 predict --json` prints for the same file (with the client's file name as "file").
The extras are added only when asked for, as PNG data URLs the page can show as they are: "heatmap" (the
map at the model's input size, coloured, its alpha the heat: the page stretches it over the film, which the
model also saw squashed to a square) and "film" (the decoded film as the model read it, for DICOM, which a
browser cannot show).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cxr14.data.films.upload import open_film
from cxr14.errors import FilmError
from cxr14.model import cam
from cxr14.model.loading import LoadedModel
from cxr14.using.predict import OVERLAY_MAX, heatmap, score_films
from cxr14.using.serve.pool import ModelGate
from cxr14.using.serve.refusals import Refused, refuse_film


@dataclass(frozen=True)
class Ask:
    """What the client asked for besides the row: a heatmap for one finding, the decoded film."""

    cam: str | None = None
    film: bool = False


def check_finding(name: str | None, labels: tuple[str, ...]) -> str | None:
    """`?cam=` must name one of the model's findings, spelled as in the JSON (400 with the list otherwise)."""
    if name is not None and name not in labels:
        raise Refused(400, f"unknown finding {name!r} for cam; use one of: {', '.join(labels)}")
    return name


def answer(model: LoadedModel, gate: ModelGate, data: bytes, name: str, ask: Ask) -> dict[str, Any]:
    """The predict row for one uploaded film, with the extras asked for. Runs on a worker thread."""
    try:
        decoded = open_film(data)
    except FilmError as exc:
        raise refuse_film(exc) from exc
    with gate.shared():
        rows = score_films(model, [decoded])
    if not rows:  # the reader accepted it but the resize did not: the dataset counted it as bad
        raise Refused(422, "the film could not be prepared for the model")
    row = rows[0]
    row["file"] = name
    film = decoded.pixels
    if ask.cam is not None:
        if not model.explainable:
            raise Refused(400, "this server runs an ONNX graph, which gives no heatmaps; serve the checkpoint for them")
        with gate.exclusive():
            heat = heatmap(model, film, model.labels.index(ask.cam))
        row["heatmap"] = png_data_url(cam.heat_png(heat))
    if ask.film:
        row["film"] = png_data_url(film_png(film))
    return row


def film_png(film: np.ndarray) -> bytes:
    """The decoded film as an 8-bit gray PNG, at most OVERLAY_MAX pixels on its longer side (as overlays are)."""
    img = Image.fromarray(film)
    img.thumbnail((OVERLAY_MAX, OVERLAY_MAX), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
