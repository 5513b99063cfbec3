"""Phantom NIH folders: exact on-disk format, determinism, reuse, label sampling, and visible signs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from cxr14.data import phantom
from cxr14.data.datasets.nih_boxes import BBOX_HEADER, BOXED
from cxr14.errors import UserError
from cxr14.judging.localisation import read_boxes
from cxr14.labels import NIH_LABELS, encode

N_PATIENTS, SIZE = 12, 64


def _files(folder):
    """Every file under folder (relative path -> bytes), except the manifest which holds no pixels."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != phantom.MANIFEST
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    summary = phantom.write_dataset(out, n_patients=N_PATIENTS, size=SIZE, seed=3, workers=2, progress=False)
    return out, summary


def test_same_seed_same_bytes_any_worker_count(folder, tmp_path):
    out, _ = folder
    again = tmp_path / "again"
    phantom.write_dataset(again, n_patients=N_PATIENTS, size=SIZE, seed=3, workers=1, progress=False)
    assert _files(out) == _files(again)
    other = tmp_path / "other"
    phantom.write_dataset(other, n_patients=N_PATIENTS, size=SIZE, seed=4, workers=1, progress=False)
    a, b = _files(out), _files(other)
    assert a[phantom.CSV_NAME] != b[phantom.CSV_NAME]
    shared = [k for k in a if k.startswith("images/") and k in b]
    assert shared and all(a[k] != b[k] for k in shared)


def test_csv_and_lists_match_nih_format(folder):
    out, summary = folder
    raw = (out / phantom.CSV_NAME).read_bytes()
    lines = raw.split(b"\r\n")
    assert lines[0].decode() == phantom.CSV_HEADER
    assert lines[0].endswith(b"[x,y],") and lines[-1] == b"" and b"\n" not in raw.replace(b"\r\n", b"")
    rows = [line.decode().split(",") for line in lines[1:-1]]
    assert all(len(row) == 11 for row in rows)
    names = [row[0] for row in rows]
    for row in rows:
        vec = encode(row[1])  # parses: raises on an unknown label
        assert row[1] == "No Finding" or row[1] == "|".join(NIH_LABELS[i] for i in np.flatnonzero(vec))
        assert row[0] == f"{int(row[3]):08d}_{int(row[2]):03d}.png"
        assert row[5] in ("M", "F") and row[6] in ("PA", "AP") and 1 <= int(row[4]) <= 100
    lists = {}
    for name in (phantom.TRAIN_VAL_LIST, phantom.TEST_LIST):
        text = (out / name).read_bytes()
        assert not text.endswith(b"\n") and b"\r" not in text
        lists[name] = text.decode().split("\n")
        assert lists[name] == sorted(lists[name])
    train, test = lists[phantom.TRAIN_VAL_LIST], lists[phantom.TEST_LIST]
    assert sorted(train + test) == sorted(names)
    assert not {n[:8] for n in train} & {n[:8] for n in test}  # split by patient
    assert summary["n_images"] == len(names) and summary["test"]["n_images"] == len(test)


def test_images_exist_right_size_some_rgba(folder):
    out, summary = folder
    names = [line.split(",")[0] for line in (out / phantom.CSV_NAME).read_text().splitlines()[1:]]
    modes = {}
    for name in names:
        with Image.open(out / "images" / name) as img:
            assert img.size == (SIZE, SIZE)
            modes[name] = img.mode
    assert len(names) >= 20  # so at least one RGBA is guaranteed
    assert set(modes.values()) == {"L", "RGBA"} and summary["n_rgba"] >= 1
    rgba = next(n for n, m in modes.items() if m == "RGBA")
    arr = np.asarray(Image.open(out / "images" / rgba))
    assert (arr[..., 3] == 255).all() and (arr[..., 0] == arr[..., 1]).all()


def test_reuse_and_rerender(tmp_path):
    kw = {"n_patients": 3, "size": 32, "seed": 1, "workers": 1, "progress": False}
    first = phantom.write_dataset(tmp_path, **kw)
    assert phantom.is_complete(tmp_path, 3, 32, 1) and not phantom.is_complete(tmp_path, 3, 32, 2)
    png = next((tmp_path / "images").glob("*.png"))
    os.utime(png, ns=(0, 0))
    assert phantom.write_dataset(tmp_path, **kw) == first
    assert png.stat().st_mtime_ns == 0  # reused, not rewritten
    manifest = tmp_path / phantom.MANIFEST
    manifest.write_text(json.dumps({"params": json.loads(manifest.read_text())["params"], "complete": False}))
    assert not phantom.is_complete(tmp_path, 3, 32, 1)  # as an interrupted run leaves it
    assert phantom.write_dataset(tmp_path, **kw) == first
    assert png.stat().st_mtime_ns != 0  # re-rendered
    assert json.loads(manifest.read_text())["params"]["seed"] == 1


def test_refuses_to_overwrite_foreign_data(tmp_path):
    """A folder with a Data_Entry CSV but no phantom manifest may be the real NIH set: hands off."""
    (tmp_path / phantom.CSV_NAME).write_text("real data\n")
    with pytest.raises(UserError, match="refusing to overwrite"):
        phantom.write_dataset(tmp_path, n_patients=2, size=32, workers=1, progress=False)
    assert (tmp_path / phantom.CSV_NAME).read_text() == "real data\n"


def test_label_sampling_matches_nih_shape():
    cohort = phantom.sample_cohort(1000, 0)  # the defaults: no rendering, so this is fast
    test = cohort.is_test
    assert 0.2 <= len(cohort.test_patients) / 1000 <= 0.27
    counts_test = cohort.labels[test].sum(0)
    assert counts_test.min() >= 50, dict(zip(NIH_LABELS, counts_test.tolist(), strict=True))
    counts = cohort.labels.sum(0)
    order = np.argsort(-counts)
    assert NIH_LABELS[order[0]] == "Infiltration"
    assert "Hernia" in [NIH_LABELS[i] for i in order[-2:]]
    assert 0.4 <= (cohort.labels.sum(1) == 0).mean() <= 0.55
    per_patient = np.bincount(cohort.patient)
    assert per_patient.max() <= 8 and (per_patient[1:] > 1).mean() > 0.5
    # chronic findings persist: once a patient has Cardiomegaly, later films keep it
    card = cohort.labels[:, NIH_LABELS.index("Cardiomegaly")]
    for pid in np.unique(cohort.patient[card == 1])[:50]:
        seq = card[cohort.patient == pid]
        assert (np.diff(seq.astype(int)) >= 0).all()


@pytest.mark.parametrize("index", range(len(NIH_LABELS)), ids=NIH_LABELS)
def test_each_sign_is_drawn(index):
    size = 96
    normal = np.zeros(len(NIH_LABELS), dtype=np.uint8)
    with_sign = normal.copy()
    with_sign[index] = 1
    diffs = []
    for seed in range(3):
        a = phantom.render(normal, size, np.random.default_rng(seed)).astype(float)
        b = phantom.render(with_sign, size, np.random.default_rng(seed)).astype(float)
        d = np.abs(a - b)
        assert d.max() >= 30, f"{NIH_LABELS[index]}: no pixel changed by 30 grey levels"
        diffs.append((d > 15).sum())  # pixels clearly changed (anatomy/noise are identical otherwise)
    assert min(diffs) >= 12, f"{NIH_LABELS[index]}: too few pixels changed {diffs}"


def test_render_varies_and_is_deterministic():
    findings = encode("Effusion|Mass")
    a = phantom.render(findings, 64, np.random.default_rng(0))
    assert a.dtype == np.uint8 and a.shape == (64, 64)
    assert np.array_equal(a, phantom.render(findings, 64, np.random.default_rng(0)))
    b = phantom.render(findings, 64, np.random.default_rng(1))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 3
    normal = phantom.render(np.zeros(len(NIH_LABELS), np.uint8), 64, np.random.default_rng(0))
    assert np.array_equal(normal, phantom.render(encode("No Finding"), 64, np.random.default_rng(0)))


def test_preview_sheet(tmp_path):
    path = tmp_path / "preview.png"
    phantom.write_preview(path, size=64, seed=0)
    with Image.open(path) as img:
        assert img.mode == "L"
        cap = max(14, 64 // 10)
        assert img.size == (5 * 64, 3 * (64 + cap))
        arr = np.asarray(img)
    assert arr[64 : 64 + cap].max() > 200  # the captions are drawn (antialiased text)


def test_box_list_in_nih_format_on_boxed_test_findings(folder):
    out, summary = folder
    raw = (out / phantom.BBOX_LIST).read_bytes()
    assert raw.startswith(BBOX_HEADER.encode() + b"\n") and raw.endswith(b"\n") and b"\r" not in raw
    boxes = read_boxes(out / phantom.BBOX_LIST)
    assert len(boxes) == summary["n_boxes"] > 0
    labels = {
        line.split(",")[0]: encode(line.split(",")[1]) for line in (out / phantom.CSV_NAME).read_text().splitlines()[1:]
    }
    test = set((out / phantom.TEST_LIST).read_text().split("\n"))
    for row in boxes.itertuples():
        assert row.image in test and labels[row.image][NIH_LABELS.index(row.finding)] == 1
        assert min(row.x, row.y) >= 0 and min(row.w, row.h) > 0
        assert row.x + row.w <= SIZE and row.y + row.h <= SIZE
    assert not boxes.duplicated(["image", "finding"]).any()  # one box per (image, finding), as NIH's


@pytest.mark.parametrize("name", BOXED)
def test_boxes_lie_on_the_drawn_signs(name):
    """The box sits on what the sign changed: toggling the finding changes the box far more than the rest.

    (Changes outside remain: other pieces of multi-part signs, Atelectasis' raised dome. Inside the box of
    an enlarged heart or a pneumothorax, much stays as it was: the heart's middle, the collapsed lung.)
    """
    index, size = NIH_LABELS.index(name), 96
    with_sign = np.zeros(len(NIH_LABELS), dtype=np.uint8)
    with_sign[index] = 1
    for seed in range(3):
        image, boxes = phantom.render_with_boxes(with_sign, size, np.random.default_rng(seed), {index})
        assert np.array_equal(image, phantom.render(with_sign, size, np.random.default_rng(seed)))
        normal = phantom.render(np.zeros(len(NIH_LABELS), np.uint8), size, np.random.default_rng(seed))
        x, y, w, h = boxes[index]
        inside = np.zeros((size, size), dtype=bool)
        inside[y : y + h, x : x + w] = True
        diff = np.abs(image.astype(float) - normal.astype(float))
        assert inside.mean() < 0.2, f"{name}: the box covers {inside.mean():.0%} of the image"
        assert (diff[inside] > 15).mean() > 0.1, f"{name}: few pixels in the box changed"
        assert diff[inside].mean() > 10 * diff[~inside].mean(), f"{name}: the sign is mostly outside its box"
