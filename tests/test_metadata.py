"""The metadata parser and splits against the real NIH files in shared/nih (both CSV versions)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from cxr14.data.metadata import read_data_entry, read_split_list
from cxr14.data.splits import make_splits
from cxr14.errors import UserError
from cxr14.labels import LABELS
from tests.conftest import NIH

pytestmark = pytest.mark.skipif(not NIH.is_dir(), reason="shared/nih metadata not present")

COUNTS = {
    "Atelectasis": (11559, 8280, 3279),
    "Cardiomegaly": (2776, 1707, 1069),
    "Effusion": (13317, 8659, 4658),
    "Infiltration": (19894, 13782, 6112),
    "Mass": (5782, 4034, 1748),
    "Nodule": (6331, 4708, 1623),
    "Pneumonia": (1431, 876, 555),
    "Pneumothorax": (5302, 2637, 2665),
    "Consolidation": (4667, 2852, 1815),
    "Edema": (2303, 1378, 925),
    "Emphysema": (2516, 1423, 1093),
    "Fibrosis": (1686, 1251, 435),
    "Pleural_Thickening": (3385, 2242, 1143),
    "Hernia": (227, 141, 86),
}


@pytest.fixture(scope="module", params=["Data_Entry_2017.csv.gz", "Data_Entry_2017_v2020.csv.gz"])
def meta(request: pytest.FixtureRequest):
    return read_data_entry(NIH / request.param)


def test_counts(meta) -> None:
    assert len(meta) == 112_120
    assert len(np.unique(meta.patients)) == 30_805
    assert dict(zip(LABELS, meta.labels.sum(0).tolist(), strict=True)) == {k: v[0] for k, v in COUNTS.items()}
    assert int((meta.labels.sum(1) == 0).sum()) == 60_361  # No Finding


def test_official_split(meta, tmp_path: Path) -> None:
    train_val = read_split_list(NIH / "train_val_list.txt")
    test = read_split_list(NIH / "test_list.txt")
    assert (len(train_val), len(test)) == (86_524, 25_596)
    for name in ("train_val_list.txt", "test_list.txt"):
        (tmp_path / name).write_bytes((NIH / name).read_bytes())
    splits = make_splits(meta, tmp_path, val_fraction=0.1, seed=0, caps=(None, None))
    assert len(splits["train"]) + len(splits["val"]) == 86_524 and len(splits["test"]) == 25_596
    assert len(np.unique(splits["test"].patients)) == 2_797
    for j, name in enumerate(LABELS):
        assert int(splits["test"].labels[:, j].sum()) == COUNTS[name][2]
        assert int(splits["train"].labels[:, j].sum() + splits["val"].labels[:, j].sum()) == COUNTS[name][1]
    assert not np.intersect1d(splits["train"].patients, splits["val"].patients).size
    capped = make_splits(meta, tmp_path, val_fraction=0.1, seed=0, caps=(80_000, 20_000))
    again = make_splits(meta, tmp_path, val_fraction=0.1, seed=0, caps=(80_000, 20_000))
    assert len(capped["test"]) == 20_000 and (capped["test"].names == again["test"].names).all()


def test_v2020_variants(tmp_path: Path) -> None:
    """NIH's own v2020 file says `Patient Sex` and ends rows with a comma; CRLF or LF."""
    text = gzip.decompress((NIH / "Data_Entry_2017_v2020.csv.gz").read_bytes()).decode()
    lines = text.splitlines()[:200]
    lines[0] = lines[0].replace("Patient Gender", "Patient Sex")
    variant = tmp_path / "Data_Entry_2017_v2020.csv"
    variant.write_bytes(("\r\n".join(line + "," for line in lines) + "\r\n").encode())
    meta = read_data_entry(variant)
    assert len(meta) == 199 and meta.names[0] == "00000001_000.png" and meta.labels[0, 1] == 1


def test_wrong_csv_is_explained() -> None:
    with pytest.raises(UserError, match="not a ChestX-ray14 Data_Entry CSV"):
        read_data_entry(NIH / "BBox_List_2017.csv.gz")


def test_unknown_label_names_the_row(tmp_path: Path) -> None:
    text = gzip.decompress((NIH / "Data_Entry_2017.csv.gz").read_bytes()).decode().splitlines()[:5]
    text[3] = text[3].replace("Effusion", "Infiltrate")
    bad = tmp_path / "Data_Entry_2017.csv"
    bad.write_text("\n".join(text))
    with pytest.raises(UserError, match=r"row 3: unknown finding 'Infiltrate'"):
        read_data_entry(bad)
