"""The metadata parser and splits against NIH's real files, as shipped in the package (both CSV versions)."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from cxr14.data.datasets.nih import find_csv, read_data_entry, read_split_list
from cxr14.data.nih_download.packaged import packaged_files, resource, write_metadata
from cxr14.data.splits import make_splits
from cxr14.errors import UserError
from cxr14.labels import NIH_LABELS


@pytest.fixture(scope="module")
def nih(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding NIH's six metadata files, written from the package as `cxr14 download` does."""
    folder = tmp_path_factory.mktemp("nih")
    assert set(write_metadata(folder).values()) == {"written"}
    return folder


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


@pytest.fixture(scope="module", params=["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"])
def meta(request: pytest.FixtureRequest, nih: Path):
    return read_data_entry(nih / request.param)


def test_counts(meta) -> None:
    assert len(meta) == 112_120
    assert len(np.unique(meta.patients)) == 30_805
    assert dict(zip(NIH_LABELS, meta.labels.sum(0).tolist(), strict=True)) == {k: v[0] for k, v in COUNTS.items()}
    assert int((meta.labels.sum(1) == 0).sum()) == 60_361  # No Finding


def test_official_split(meta, nih: Path) -> None:
    train_val = read_split_list(nih / "train_val_list.txt")
    test = read_split_list(nih / "test_list.txt")
    assert (len(train_val), len(test)) == (86_524, 25_596)
    splits = make_splits(meta, nih, val_fraction=0.1, seed=0, caps=(None, None))
    assert len(splits["train"]) + len(splits["val"]) == 86_524 and len(splits["test"]) == 25_596
    assert len(np.unique(splits["test"].patients)) == 2_797
    for j, name in enumerate(NIH_LABELS):
        assert int(splits["test"].labels[:, j].sum()) == COUNTS[name][2]
        assert int(splits["train"].labels[:, j].sum() + splits["val"].labels[:, j].sum()) == COUNTS[name][1]
    assert not np.intersect1d(splits["train"].patients, splits["val"].patients).size
    capped = make_splits(meta, nih, val_fraction=0.1, seed=0, caps=(80_000, 20_000))
    again = make_splits(meta, nih, val_fraction=0.1, seed=0, caps=(80_000, 20_000))
    assert len(capped["test"]) == 20_000 and (capped["test"].names == again["test"].names).all()


def test_v2020_variants(nih: Path, tmp_path: Path) -> None:
    """NIH's own v2020 file says `Patient Sex` and ends rows with a comma; CRLF or LF; gzipped or not."""
    text = (nih / "Data_Entry_2017_v2020.csv").read_text()
    lines = text.splitlines()[:200]
    lines[0] = lines[0].replace("Patient Gender", "Patient Sex")
    variant = tmp_path / "Data_Entry_2017_v2020.csv"
    variant.write_bytes(("\r\n".join(line + "," for line in lines) + "\r\n").encode())
    meta = read_data_entry(variant)
    assert len(meta) == 199 and meta.names[0] == "00000001_000.png" and meta.labels[0, 1] == 1
    variant.rename(tmp_path / "elsewhere.csv")
    (tmp_path / "Data_Entry_2017_v2020.csv.gz").write_bytes(gzip.compress((tmp_path / "elsewhere.csv").read_bytes()))
    assert find_csv(tmp_path).name == "Data_Entry_2017_v2020.csv.gz"
    assert (read_data_entry(find_csv(tmp_path)).labels == meta.labels).all()


def test_wrong_csv_is_explained(nih: Path) -> None:
    with pytest.raises(UserError, match="not a ChestX-ray14 Data_Entry CSV"):
        read_data_entry(nih / "BBox_List_2017.csv")


def test_unknown_label_names_the_row(nih: Path, tmp_path: Path) -> None:
    text = (nih / "Data_Entry_2017.csv").read_text().splitlines()[:5]
    text[3] = text[3].replace("Effusion", "Infiltrate")
    bad = tmp_path / "Data_Entry_2017.csv"
    bad.write_text("\n".join(text))
    with pytest.raises(UserError, match=r"row 3: unknown finding 'Infiltrate'"):
        read_data_entry(bad)


def test_packaged_files_are_nih_bytes_and_documented(nih: Path) -> None:
    """Exact NIH bytes (the 2017 CSV keeps its CRLF and trailing comma, the lists have no final newline);
    SOURCES.md states each file's sha256 as files.csv does."""
    sources = resource("SOURCES.md").read_text()
    for entry in packaged_files():
        data = (nih / entry.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256 and len(data) == entry.nbytes
        assert re.search(rf"`{re.escape(entry.name)}` \|.*`{entry.sha256}`", sources), entry.name
    assert (nih / "Data_Entry_2017.csv").read_bytes().split(b"\r\n")[0].endswith(b",")
    assert not (nih / "test_list.txt").read_bytes().endswith(b"\n")


def test_write_metadata_keeps_a_users_file(nih: Path, tmp_path: Path) -> None:
    (tmp_path / "test_list.txt").write_text("mine")
    (tmp_path / "Data_Entry_2017.csv").write_bytes((nih / "Data_Entry_2017.csv").read_bytes())
    status = write_metadata(tmp_path)
    assert status["test_list.txt"] == "kept" and status["Data_Entry_2017.csv"] == "present"
    assert status["train_val_list.txt"] == "written" and (tmp_path / "test_list.txt").read_text() == "mine"
