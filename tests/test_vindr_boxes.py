"""VinDr-CXR's radiologist boxes: the phantom writes them around its drawn signs, in PhysioNet's files, agreeing with
the image labels reader by reader; `datasets.vindr.read_boxes` reads them; `cxr14 evaluate --bbox` scores a VinDr
model's heatmaps against them through the same scoring as NIH's boxes."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from cxr14.cli import main
from cxr14.data.phantom import render_with_boxes, sample_cohort
from cxr14.data.phantom.layouts import VINDR_DRAWN, VINDR_LOCAL
from cxr14.data.phantom.writer import _IMAGE_STREAM

N_PATIENTS, SIZE, SEED = 60, 48, 0
TINY = ("--model", "convnext_atto", "--image_size", "32", "--batch_size", "8", "--num_workers", "0", "--device",
        "cpu", "--no-progress", "--num_epochs", "1", "--max_train_samples", "0", "--max_test_samples", "0")  # fmt: skip


@pytest.fixture(scope="module")
def vindr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vindr") / "data"
    assert main(["phantom", "--out", str(out), "--layout", "vindr", "--n_patients", str(N_PATIENTS), "--size",
                 str(SIZE), "--seed", str(SEED), "--workers", "2", "--no-progress"]) == 0  # fmt: skip
    return out


def table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_boxes_are_the_drawn_signs_and_agree_with_the_labels(vindr: Path) -> None:
    cohort = sample_cohort(N_PATIENTS, SEED)
    index = {hashlib.md5(f"{SEED}-vindr-{i}".encode()).hexdigest(): i for i in range(len(cohort.names))}
    for part in ("train", "test"):
        boxes = table(vindr / "annotations" / f"annotations_{part}.csv")
        labels = table(vindr / "annotations" / f"image_labels_{part}.csv")
        marked = defaultdict(set)  # (film, reader; test films: the consensus) -> the findings with a row
        for row in boxes:
            marked[row["image_id"], row["rad_id"] if part == "train" else ""].add(row["class_name"])
        assert len(labels) == len(marked) + sum(  # a reader who marked only global findings has no row
            row["No finding"] == "0" and not any(row[n] == "1" for n in VINDR_LOCAL) for row in labels)
        for row in labels:  # every local finding a reader marked has its box, and nothing else has one
            local = {n for n in VINDR_LOCAL if row[n] == "1"}
            expected = local or ({"No finding"} if row["No finding"] == "1" else set())
            assert marked.get((row["image_id"], row.get("rad_id", "")), set()) == expected, row["image_id"]
    checked = 0
    for row in table(vindr / "annotations" / "annotations_test.csv"):  # the consensus: the drawn sign's box exactly
        i = index[row["image_id"]]
        drawn = VINDR_DRAWN.get(row["class_name"], ())
        if not drawn:
            continue
        rng = np.random.default_rng(np.random.SeedSequence([_IMAGE_STREAM, SEED, i]))
        pixels, signs = render_with_boxes(cohort.labels[i], SIZE, rng, drawn)
        stored = pydicom.dcmread(vindr / "test" / f"{row['image_id']}.dicom").pixel_array
        assert np.array_equal(stored, pixels.astype(np.uint16) * 16)  # the same film (8 bits stored as 12)
        corners = tuple(float(row[c]) for c in ("x_min", "y_min", "x_max", "y_max"))
        assert corners in {(x, y, x + w, y + h) for x, y, w, h in signs.values()}
        checked += 1
    assert checked >= 10


def test_read_boxes_gives_localisation_its_table(vindr: Path) -> None:
    from cxr14.data.datasets import vindr as reader

    boxes = reader.read_boxes(vindr)
    assert list(boxes.columns) == ["image", "finding", "x", "y", "w", "h", "reader"]
    rows = {part: [r for r in table(vindr / "annotations" / f"annotations_{part}.csv") if r["x_min"]]
            for part in ("train", "test")}  # fmt: skip
    assert len(boxes) == len(rows["train"]) + len(rows["test"])
    first = rows["test"][0]
    got = boxes[boxes["image"] == f"test/{first['image_id']}.dicom"].iloc[0]
    assert got["finding"] == first["class_name"] and got["reader"] == first["rad_id"]
    assert (got["x"], got["x"] + got["w"]) == (float(first["x_min"]), float(first["x_max"]))
    assert ((boxes["w"] > 0) & (boxes["h"] > 0)).all()
    assert (boxes.groupby(["image", "finding"]).size() > 1).any()  # training films: a box per reader


def test_bad_box_files_are_named(vindr: Path, tmp_path: Path) -> None:
    from cxr14.data.datasets import vindr as reader
    from cxr14.errors import UserError

    (tmp_path / "annotations").mkdir()
    with pytest.raises(UserError, match=r"annotations_train\.csv or annotations/annotations_test\.csv"):
        reader.read_boxes(tmp_path)
    lines = (vindr / "annotations" / "annotations_test.csv").read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if i and line.split(",")[3])  # the first box row
    parts = lines[k].split(",")
    lines[k] = ",".join([*parts[:4], "wide", *parts[5:]])
    (tmp_path / "annotations" / "annotations_test.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"annotations_test.csv, row {k + 1}, column 'y_min': 'wide'"):
        reader.read_boxes(tmp_path)


@pytest.mark.slow
def test_evaluate_bbox_scores_a_vindr_model_against_the_readers_boxes(vindr: Path, tmp_path: Path, capsys) -> None:
    """Through the real CLI: a model of four VinDr findings (fewer heatmaps than all 28 would take), its heatmaps
    scored against the test films' boxes of exactly those findings, Nodule/Mass's included."""
    run, out = tmp_path / "run", tmp_path / "eval"
    labels = ("Nodule/Mass", "Pleural effusion", "Infiltration", "Cardiomegaly")
    assert main(["train", "--dataset", "vindr", "--data_dir", str(vindr), "--labels", ",".join(labels),
                 "--output_dir", str(run), *TINY]) == 0  # fmt: skip
    assert main(["evaluate", "--checkpoint", str(run / "best_model.pth"), "--data_dir", str(vindr), "--out", str(out),
                 "--bbox", "--no-progress", "--n_resamples", "100", "--num_workers", "0", "--device", "cpu"]) == 0
    capsys.readouterr()
    boxes = pd.read_csv(vindr / "annotations" / "annotations_test.csv", keep_default_na=False)
    boxes = boxes[boxes["class_name"].isin(labels)]  # the model's findings; "No finding" rows are no boxes
    found = json.loads((out / "metrics.json").read_text())["localisation"]
    assert found["n_boxes"] == len(boxes) > 0
    assert {f: v["n_boxes"] for f, v in found["per_class"].items()} == boxes["class_name"].value_counts().to_dict()
    assert list(found["per_class"]) == [n for n in labels if n in set(boxes["class_name"])]  # the model's order
    scored = pd.read_csv(out / "localisation.csv")
    assert len(scored) == len(boxes) and set(scored["reader"]) == set(boxes["rad_id"])
    assert set(scored["image"]) == {f"test/{i}.dicom" for i in boxes["image_id"]}
    assert scored["hit"].isin([True, False]).all() and scored["iou"].between(0, 1).all()
    assert (scored["chance"] > 0).all() and 0 <= found["mean_hit_rate"] <= 1
    assert all((out / g["file"]).is_file() for g in found["gallery"])  # "Nodule/Mass" made a file name too
    assert any(g["finding"] == "Nodule/Mass" for g in found["gallery"])
