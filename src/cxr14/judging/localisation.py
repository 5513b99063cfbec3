"""Do the heatmaps point at the disease? Scoring CAMs against radiologists' boxes (NIH's, or VinDr-CXR's).

NIH's `BBox_List_2017.csv` (format: `cxr14.data.datasets.nih_boxes`) holds 984 boxes on 880 test images for 8 findings,
in the PNG's pixel space (1024 x 1024); VinDr-CXR's (`cxr14.data.datasets.vindr.read_boxes`) each reader's boxes
in the DICOM's pixels. Both come as one table (image, finding, x, y, w, h) and are scored the same way. Two scores
per box, each beside its chance level:

- pointing game (Zhang et al., 2016): a hit when the heatmap's hottest pixel lies inside the box.
  A map that points at random hits with probability box area / image area: the chance rate.
- IoU of the heatmap thresholded at `threshold` x its maximum (0.5 by default: the half-maximum region)
  with the box. The box covers pixels fractionally at its edges, so small boxes on small maps score fairly.

A map with no positive value (a class the model sees nowhere) points nowhere: a miss, IoU 0.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxr14.data.datasets.nih_boxes import BBOX_HEADER, BOXED, FILE_SPELLING
from cxr14.data.films.decode import DICOM_SUFFIXES
from cxr14.errors import UserError
from cxr14.labels import NIH_LABELS

_FROM_FILE = {v: k for k, v in FILE_SPELLING.items()}
COLUMNS = ("image", "finding", "x", "y", "w", "h")

Box = tuple[float, float, float, float]  # x, y, w, h: left, top, width, height in pixels


def read_boxes(path: Path) -> pd.DataFrame:
    """NIH's box list (or its .gz) -> DataFrame[image, finding, x, y, w, h], findings spelt as in NIH_LABELS.

    A file that is not NIH's box list, or names a finding NIH did not box, is a UserError that says so.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", newline="") as f:  # ~50 kB: read whole
            text = f.read()
        header, _, body = text.partition("\n")
        header = header.rstrip("\r")
        raw = pd.read_csv(io.StringIO(body), header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame(columns=range(6))
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"Cannot read the box list {path} ({type(exc).__name__}: {exc}).") from exc
    if header != BBOX_HEADER or raw.shape[1] < 6:
        raise UserError(
            f"{path} is not NIH's box list: its header is {header[:80]!r}, expected {BBOX_HEADER!r} "
            f"followed by rows of image, finding, x, y, w, h. Use BBox_List_2017.csv as NIH ships it."
        )
    boxes = raw.iloc[:, :6].set_axis(list(COLUMNS), axis=1)
    boxes["finding"] = boxes["finding"].replace(_FROM_FILE)
    unknown = sorted(set(boxes["finding"]) - set(BOXED))
    if unknown:
        raise UserError(f"{path} names findings NIH did not box: {', '.join(unknown)} (expected {', '.join(BOXED)}).")
    try:
        boxes[list(COLUMNS[2:])] = boxes[list(COLUMNS[2:])].astype(float)
    except ValueError as exc:
        raise UserError(f"{path} has a box coordinate that is not a number ({exc}).") from exc
    return boxes.reset_index(drop=True)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image (PNG, JPEG or DICOM) from its header alone (no pixel is decoded)."""
    if str(path).lower().endswith(DICOM_SUFFIXES):
        import pydicom  # here: only DICOM datasets pay its import

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Columns), int(ds.Rows)
    with Image.open(path) as img:
        return img.size


def scale_box(box: Box, image_wh: tuple[int, int], heat_wh: tuple[int, int]) -> Box:
    """A box in the image's pixel space -> the heatmap's (the model saw the image resized to a square)."""
    sx, sy = heat_wh[0] / image_wh[0], heat_wh[1] / image_wh[1]
    x, y, w, h = box
    return x * sx, y * sy, w * sx, h * sy


def chance(box: Box, heat_wh: tuple[int, int]) -> float:
    """The pointing game's chance rate: the share of the image the box covers (clipped to the image)."""
    return float(_coverage(box, heat_wh[1], heat_wh[0]).sum()) / (heat_wh[0] * heat_wh[1])


def score(heat: np.ndarray, box: Box, threshold: float = 0.5) -> tuple[bool, float]:
    """(pointing-game hit, IoU) of one heatmap [H, W] with one box given in the heatmap's pixels.

    hit: the centre of the hottest pixel (the first one, if tied) lies inside the box.
    IoU: pixels >= threshold x the map's maximum, against the box's fractional pixel coverage.
    """
    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"heat must be 2-D, got shape {heat.shape}")
    peak = float(heat.max()) if heat.size else 0.0
    if not peak > 0:
        return False, 0.0
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    x, y, w, h = box
    hit = bool(x <= c + 0.5 < x + w and y <= r + 0.5 < y + h)
    cover = _coverage(box, *heat.shape)
    mask = heat >= threshold * peak
    inter = float(cover[mask].sum())
    union = float(mask.sum()) + float(cover.sum()) - inter
    return hit, inter / union if union > 0 else 0.0


def _coverage(box: Box, rows: int, cols: int) -> np.ndarray:
    """[rows, cols] fraction of each pixel inside the box (separable: x overlap times y overlap)."""
    x, y, w, h = box

    def overlap(start: float, length: float, n: int) -> np.ndarray:
        edges = np.arange(n, dtype=np.float64)
        return np.clip(np.minimum(edges + 1, start + length) - np.maximum(edges, start), 0, 1)

    return np.outer(overlap(y, h, rows), overlap(x, w, cols))


def score_boxes(
    boxes: pd.DataFrame, maps: np.ndarray, image_wh: Sequence[tuple[int, int]], threshold: float = 0.5
) -> pd.DataFrame:
    """Score every box against its heatmap: one row per box (image, finding, hit, iou, chance).

    boxes: `read_boxes` rows; maps[i]: the heatmap [S, S] of row i's image for row i's finding; image_wh[i]:
    that image's (width, height) in pixels, the space the box is given in (`image_size` reads it).
    """
    if not len(boxes) == len(maps) == len(image_wh):
        raise ValueError(f"{len(boxes)} boxes, {len(maps)} heatmaps and {len(image_wh)} image sizes")
    rows = []
    for box, heat, wh in zip(boxes.itertuples(index=False), maps, image_wh, strict=True):
        heat_wh = (heat.shape[1], heat.shape[0])
        scaled = scale_box((box.x, box.y, box.w, box.h), wh, heat_wh)
        hit, iou = score(heat, scaled, threshold)
        rows.append((box.image, box.finding, hit, iou, chance(scaled, heat_wh)))
    return pd.DataFrame(rows, columns=["image", "finding", "hit", "iou", "chance"])


def summarize(scores: pd.DataFrame, order: Sequence[str] = NIH_LABELS) -> pd.DataFrame:
    """Per-finding table from one row per box (finding, hit, iou, chance), plus a 'mean' row.

    Columns: n_boxes, hit_rate, mean_iou, chance (the mean chance rate), hit_over_chance. The 'mean' row
    averages over findings (each finding counts once, as NIH's 8 are unevenly boxed), not over boxes. Findings
    in `order` (the label set's: NIH's by default), any others after them in the order they come.
    """
    present = list(dict.fromkeys(scores["finding"]))
    order = [f for f in order if f in present] + [f for f in present if f not in order]
    table = (
        scores.groupby("finding")
        .agg(n_boxes=("hit", "size"), hit_rate=("hit", "mean"), mean_iou=("iou", "mean"), chance=("chance", "mean"))
        .reindex(order)
    )
    mean = table[["hit_rate", "mean_iou", "chance"]].mean()
    table.loc["mean"] = [int(table["n_boxes"].sum()), mean["hit_rate"], mean["mean_iou"], mean["chance"]]
    table["n_boxes"] = table["n_boxes"].astype(int)
    table["hit_over_chance"] = table["hit_rate"] / table["chance"]
    return table
