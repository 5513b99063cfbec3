"""`cxr14 evaluate --bbox`: each boxed finding's heatmap on its image, scored against the radiologists' box.

The boxes are the data's own: NIH's BBox_List_2017.csv, or VinDr-CXR's annotations_{train,test}.csv (each reader's
boxes, `datasets.vindr.read_boxes`), read into one table and scored by one path. The heatmaps come from
`cam.heatmaps` on the model input the classifier itself sees (the split's own image source and the checkpoint's
transform); the scoring is `localisation.score_boxes` and `summarize`. Writes localisation.csv (one row per box)
and a small gallery of overlays with their boxes drawn, for the report.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import ImageDraw

from cxr14.data.datasets.nih import find_in, index_images
from cxr14.data.datasets.nih_boxes import BBOX_NAME
from cxr14.data.films.decode import read_gray
from cxr14.data.pipeline.loaders import SplitData
from cxr14.errors import UserError
from cxr14.files import atomic_path, write_text
from cxr14.judging.localisation import image_size, read_boxes, score_boxes, summarize
from cxr14.labels import match
from cxr14.model import cam
from cxr14.model.loading import LoadedModel

log = logging.getLogger(__name__)
THRESHOLD = 0.5  # IoU region: the heatmap at or above half its maximum
PER_FINDING_IN_GALLERY = 2
GALLERY_SIZE = 512  # px of a gallery overlay
CAM_BATCH = 16


def find_boxes(data_dir: Path, dataset: str = "nih") -> list[Path]:
    """The data folder's box file(s) - VinDr-CXR's annotations files, else NIH's BBox_List_2017.csv (or .gz) - or a
    UserError saying where they should be."""
    if dataset == "vindr":
        from cxr14.data.datasets import vindr

        return vindr.box_files(data_dir)
    if dataset != "nih":
        raise UserError(f"--bbox scores heatmaps against radiologists' boxes, which NIH ChestX-ray14 ({BBOX_NAME}) "
                        f"and VinDr-CXR (annotations/annotations_{{train,test}}.csv) ship; --dataset {dataset} has "
                        f"none. Leave out --bbox.")  # fmt: skip
    found = find_in(data_dir, BBOX_NAME)
    if found is not None:
        return [found]
    raise UserError(
        f"--bbox needs NIH's box list {BBOX_NAME} in {data_dir} (984 radiologist boxes on test images). "
        f"`cxr14 download --data_dir {data_dir}` writes it (no network needed); phantom sets have their own."
    )


def heatmaps_for(model: LoadedModel, data: SplitData, rows: list[int], findings: list[int]) -> np.ndarray:
    """[N, S, S] HiResCAM maps of the given dataset rows, each for its finding, batched."""
    maps = []
    for start in range(0, len(rows), CAM_BATCH):
        pixels = np.stack([data.dataset.source.read(i) for i in rows[start : start + CAM_BATCH]])
        maps.append(model.heatmaps(pixels, findings[start : start + CAM_BATCH]))
    return np.concatenate(maps)


def load_boxes(data_dir: Path, dataset: str = "nih") -> pd.DataFrame:
    """The data's boxes as one table (image, finding, x, y, w, h; VinDr's with its reader too)."""
    if dataset == "vindr":
        from cxr14.data.datasets import vindr

        return vindr.read_boxes(data_dir)
    return read_boxes(find_boxes(data_dir, dataset)[0])


def localise(model: LoadedModel, data: SplitData, scored: np.ndarray, data_dir: Path, out: Path,
             dataset: str = "nih") -> dict[str, Any]:  # fmt: skip
    """Score every box on the scored images; write localisation.csv and the gallery; return the JSON part.

    `scored`: the names of the split's images that were read and scored (unreadable ones were skipped). A box's
    finding is the model's output of the same name, or of the same finding in another label set's spelling
    (`labels.match`, exact only: an NIH model's Effusion scores VinDr's Pleural effusion boxes).
    """
    boxes = load_boxes(data_dir, dataset)
    where = ", ".join(p.name for p in find_boxes(data_dir, dataset))
    row_of = {name: i for i, name in enumerate(data.split.names)}  # rows of the dataset, which serves pixels
    boxes = boxes[boxes["image"].isin(set(scored.tolist()))].reset_index(drop=True)
    if boxes.empty:
        raise UserError(
            f"None of the images in {where} is in the scored {data.split.name} split (score the whole split: no "
            f"--max_samples; NIH's boxes are on test images only: --split test)."
        )
    labels = list(model.card["labels"])
    output = {f: cols[0] for f, cols, how in match(labels, list(dict.fromkeys(boxes["finding"]))) if how == "exact"}
    boxes = boxes[boxes["finding"].isin(output)].reset_index(drop=True)
    if boxes.empty:
        raise UserError(f"None of the findings boxed in {where} is among this model's labels ({', '.join(labels)}).")
    files = index_images(data_dir) if data.split.root is None else {n: data.split.root / n for n in boxes["image"]}
    rows = [row_of[name] for name in boxes["image"]]
    findings = [output[f] for f in boxes["finding"]]
    log.info("heatmaps for %d boxes on %d images", len(boxes), boxes["image"].nunique())
    maps = heatmaps_for(model, data, rows, findings)
    scores = score_boxes(boxes, maps, [image_size(files[name]) for name in boxes["image"]], THRESHOLD)
    per_box = pd.concat([boxes, scores[["hit", "iou", "chance"]]], axis=1)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "localisation.csv", per_box.to_csv(index=False))
    table = summarize(scores, sorted(output, key=output.get))  # the findings in the model's label order
    mean = table.loc["mean"]
    log.info(
        "pointing game: hit rate %.3f against chance %.3f (%.1fx); IoU %.3f",
        mean["hit_rate"], mean["chance"], mean["hit_over_chance"], mean["mean_iou"],
    )  # fmt: skip
    return {
        "threshold_rule": f"heatmap >= {THRESHOLD} x its maximum (IoU); hottest pixel inside the box (hit)",
        "mean_hit_rate": float(mean["hit_rate"]),
        "mean_chance": float(mean["chance"]),
        "mean_iou": float(mean["mean_iou"]),
        "n_boxes": int(mean["n_boxes"]),
        "per_class": {
            f: {k: (int(v) if k == "n_boxes" else float(v)) for k, v in table.loc[f].items()}
            for f in table.index if f != "mean"
        },
        "gallery": gallery(boxes, scores, maps, files, out),
    }  # fmt: skip


def gallery(
    boxes: pd.DataFrame, scores: pd.DataFrame, maps: np.ndarray, files: dict[str, Path], out: Path
) -> list[dict[str, Any]]:
    """Overlays (box drawn in green) of the first boxes of each finding, as heatmaps/IMAGE-FINDING.png."""
    picked = boxes.groupby("finding", sort=False).head(PER_FINDING_IN_GALLERY).index
    entries = []
    for i in picked:
        box, name, finding = boxes.loc[i], boxes.at[i, "image"], boxes.at[i, "finding"]
        width, height = image_size(files[name])
        film = read_gray(files[name], GALLERY_SIZE)
        img = cam.overlay(film, maps[i])
        sx, sy = GALLERY_SIZE / width, GALLERY_SIZE / height
        rect = (box["x"] * sx, box["y"] * sy, (box["x"] + box["w"]) * sx, (box["y"] + box["h"]) * sy)
        ImageDraw.Draw(img).rectangle(rect, outline=(0, 230, 0), width=3)
        rel = f"heatmaps/{Path(name).stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', finding)}.png"  # Nodule/Mass
        (out / "heatmaps").mkdir(parents=True, exist_ok=True)
        with atomic_path(out / rel) as tmp:
            img.save(tmp, format="PNG")
        entries.append({"image": name, "finding": finding, "file": rel, "hit": bool(scores.at[i, "hit"]),
                        "iou": float(scores.at[i, "iou"])})  # fmt: skip
    return entries
