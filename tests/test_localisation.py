"""NIH's box list (read and written byte for byte) and the pointing-game / IoU scores of heatmaps."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr14.data.datasets.nih_boxes import BBOX_HEADER, BOXED, format_boxes
from cxr14.data.nih_download.packaged import resource
from cxr14.errors import UserError
from cxr14.judging import localisation as loc


def test_real_box_list_reads_and_writes_back_byte_for_byte(tmp_path: Path) -> None:
    real = tmp_path / "BBox_List_2017.csv.gz"  # NIH's file, as the package ships it
    real.write_bytes(resource("BBox_List_2017.csv.gz").read_bytes())
    boxes = loc.read_boxes(real)
    assert len(boxes) == 984 and boxes["image"].nunique() == 880
    assert sorted(boxes["finding"].unique()) == sorted(BOXED)  # "Infiltrate" read as Infiltration
    assert (boxes[["x", "y"]] >= 0).all().all() and (boxes["x"] + boxes["w"]).max() <= 1024 + 1
    rows = list(boxes.itertuples(index=False, name=None))
    original = gzip.decompress(real.read_bytes()).decode()
    assert format_boxes(rows) == original
    plain = tmp_path / "plain" / "BBox_List_2017.csv"
    plain.parent.mkdir()
    plain.write_text(original)
    pd.testing.assert_frame_equal(loc.read_boxes(plain), boxes)


def test_foreign_or_bad_box_lists_are_user_errors(tmp_path: Path) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text("Image Index,Finding Labels,Follow-up #\n00000001_000.png,Mass,0\n")
    with pytest.raises(UserError, match="is not NIH's box list"):
        loc.read_boxes(path)
    path.write_text(f"{BBOX_HEADER}\n00000001_000.png,Hernia,1,2,3,4\n")
    with pytest.raises(UserError, match="did not box: Hernia"):
        loc.read_boxes(path)
    path.write_text(f"{BBOX_HEADER}\n00000001_000.png,Mass,1,two,3,4\n")
    with pytest.raises(UserError, match="not a number"):
        loc.read_boxes(path)
    with pytest.raises(UserError, match="Cannot read"):
        loc.read_boxes(tmp_path / "absent.csv")
    path.write_text(f"{BBOX_HEADER}\r\n00000001_000.png,Infiltrate,1,2,3,4\r\n")  # CRLF is accepted
    assert loc.read_boxes(path).iloc[0].tolist() == ["00000001_000.png", "Infiltration", 1.0, 2.0, 3.0, 4.0]


def test_pointing_game_and_iou() -> None:
    heat = np.zeros((10, 10))
    heat[2:4, 6:9] = 1.0  # a 2 x 3 hot block, rows 2-3, columns 6-8
    heat[2, 6] = 2.0  # its hottest pixel
    assert loc.score(heat, (6, 2, 3, 2)) == (True, pytest.approx(1.0))  # box == hot block
    hit, iou = loc.score(heat, (0, 0, 5, 5))
    assert not hit and iou == 0.0
    assert loc.score(heat, (6, 2, 1, 1)) == (True, pytest.approx(1 / 6))  # only the peak pixel
    # fractional coverage: the box [6.5, 9.5) x [2, 4) covers half of columns 6 and 9, all of 7 and 8
    hit, iou = loc.score(heat, (6.5, 2, 3, 2))
    assert hit  # the peak's centre (6.5, 2.5) lies on the box's left edge: inside (half-open box)
    assert iou == pytest.approx(5 / 7)  # intersection 2 x (0.5 + 1 + 1), union 6 + 6 - 5
    assert loc.score(heat, (6.6, 2, 3, 2))[0] is False  # a tenth of a pixel further: the peak is outside
    assert loc.score(heat, (6, 2, 3, 2), threshold=0.75) == (True, pytest.approx(1 / 6))  # only the 2.0 pixel
    assert loc.score(np.zeros((10, 10)), (0, 0, 10, 10)) == (False, 0.0)  # a map that points nowhere


def test_chance_scaling_and_image_size(tmp_path: Path) -> None:
    assert loc.chance((0, 0, 5, 5), (10, 10)) == pytest.approx(0.25)
    assert loc.chance((8, 8, 5, 5), (10, 10)) == pytest.approx(0.04)  # clipped at the image border
    assert loc.scale_box((512, 256, 100, 50), (1024, 512), (64, 64)) == (32, 32, 6.25, 6.25)
    path = tmp_path / "x.png"
    Image.new("L", (30, 20)).save(path)
    assert loc.image_size(path) == (30, 20)


def test_summarize_per_finding_and_mean() -> None:
    scores = pd.DataFrame(
        {
            "finding": ["Nodule", "Nodule", "Cardiomegaly", "Nodule"],
            "hit": [True, False, True, True],
            "iou": [0.5, 0.0, 0.8, 0.1],
            "chance": [0.01, 0.02, 0.2, 0.03],
        }
    )
    table = loc.summarize(scores)
    assert list(table.index) == ["Cardiomegaly", "Nodule", "mean"]  # NIH_LABELS order, then the mean
    assert table.loc["Nodule", "n_boxes"] == 3 and table.loc["Nodule", "hit_rate"] == pytest.approx(2 / 3)
    assert table.loc["Nodule", "chance"] == pytest.approx(0.02)
    assert table.loc["mean", "hit_rate"] == pytest.approx((1 + 2 / 3) / 2)  # over findings, not boxes
    assert table.loc["mean", "n_boxes"] == 4
    assert table.loc["Cardiomegaly", "hit_over_chance"] == pytest.approx(5.0)


def test_score_boxes_scales_each_box_to_its_heatmap() -> None:
    boxes = pd.DataFrame(
        {"image": ["a.png", "b.png"], "finding": ["Mass", "Mass"], "x": [512.0, 0.0], "y": [0.0, 0.0],
         "w": [512.0, 100.0], "h": [256.0, 100.0]}
    )  # fmt: skip
    maps = np.zeros((2, 8, 8))
    maps[:, 1, 6] = 1.0  # both maps peak in the top-right quarter
    scores = loc.score_boxes(boxes, maps, [(1024, 1024), (1000, 1000)])
    assert scores["hit"].tolist() == [True, False]
    assert scores["chance"].tolist() == pytest.approx([0.125, 0.01])
    assert scores["iou"].iloc[0] == pytest.approx(1 / 8)  # the one hot pixel against 8 box pixels
    with pytest.raises(ValueError, match="2 boxes, 1 heatmaps"):
        loc.score_boxes(boxes, maps[:1], [(1024, 1024)])
