"""The readers on real metadata files, and the phantom layouts held to the rules those files follow.

torchxrayvision's wheel (PyPI; pinned in WHEEL) ships real metadata files in torchxrayvision/data/: CheXpert-v1.0-
small's train.csv (chexpert_train.csv.gz), PadChest's labels CSV, and Kaggle's VinBigData train.csv (VinDr-CXR's
15,000 training films: every reader's boxes, one "No finding" row per reader who marked nothing). `bash
scripts/setup` downloads the wheel (never installs it) into .cache/wheels/; without it the tests that need it skip
and say so. They assemble each dataset's folder in tmp_path as its reader expects it (the real CSV, no images:
reading metadata opens none) and run cxr14's readers on it.

Every count asserted was computed by an independent pass written here (the csv module, ast.literal_eval; no cxr14
code), and is also written down below, so that a change in the file, in the reader or in the pass shows:

CheXpert train.csv: 223,414 films (191,027 frontal) of 64,540 patients (64,534 with a frontal film); per
observation the 1.0 / 0.0 / -1.0 cells are CHEXPERT_CELLS. No Finding is 1.0 or blank, and never 1.0 beside a
positive or uncertain pathology (Support Devices aside: 8,808 rows have both at 1.0). So cxr14 reads a blank No
Finding beside a positive pathology as negative: 183,519 rows (161,009 frontal; 194,934 if uncertain ones counted:
they do not, --uncertain changes only the -1 cells).

PadChest: 160,861 rows (not 160,868); 880 name no finding (777 "['']", 103 "nan") and are read as unknown, which
leaves 159,981 films of 67,383 patients (110,043 frontal: PA, AP, AP_horizontal). Projection: PADCHEST_PROJECTIONS.
Rows listing each finding: PADCHEST_POSITIVE ('pulmonary mass' 1,039, 'mass' 56: NIH's Mass is the first).

VinBigData train.csv: 67,914 rows on 15,000 films, three readers each (17 in all); 36,096 boxes on 4,394 films
(VINDR_BOXES per finding), the other 31,818 rows "No finding" without coordinates. Films that any reader, or a
majority, marked: VINDR_ANY and VINDR_MAJORITY (read through an image_labels_train.csv this file builds from it).
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import re
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from cxr14.data.phantom.layouts import (
    PADCHEST_HEADER,
    PADCHEST_NAMES,
    VINDR_BOX_HEADER,
    VINDR_LABELS,
    VINDR_LOCAL,
    write_layout,
)
from tests.conftest import REPO

WHEEL = REPO / ".cache" / "wheels" / "torchxrayvision-1.5.7-py3-none-any.whl"
DATA = "torchxrayvision/data/"
PADCHEST_CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"

#: CheXpert train.csv, per observation: (1.0 cells, 0.0 cells, -1.0 cells); the rest are blank.
CHEXPERT_CELLS = {
    "No Finding": (22381, 0, 0), "Enlarged Cardiomediastinum": (10798, 21638, 12403),
    "Cardiomegaly": (27000, 11116, 8087), "Lung Opacity": (105581, 6599, 5598), "Lung Lesion": (9186, 1270, 1488),
    "Edema": (52246, 20726, 12984), "Consolidation": (14783, 28097, 27742), "Pneumonia": (6039, 2799, 18770),
    "Atelectasis": (33376, 1328, 33739), "Pneumothorax": (19448, 56341, 3145),
    "Pleural Effusion": (86187, 35396, 11628), "Pleural Other": (3523, 316, 2653), "Fracture": (9040, 2512, 642),
    "Support Devices": (116001, 6137, 1079),
}  # fmt: skip
PADCHEST_PROJECTIONS = {"PA": 91728, "L": 49579, "AP_horizontal": 14346, "AP": 4559, "COSTAL": 630, "EXCLUDE": 11,
                        "UNK": 8}  # fmt: skip
#: PadChest rows listing each finding (of the rows that name any).
PADCHEST_POSITIVE = {"cardiomegaly": 15022, "pleural effusion": 9853, "pulmonary mass": 1039, "mass": 56,
                     "nodule": 3748, "normal": 50616}  # fmt: skip
VINDR_BOXES = {"Aortic enlargement": 7162, "Atelectasis": 279, "Calcification": 960, "Cardiomegaly": 5427,
               "Consolidation": 556, "ILD": 1000, "Infiltration": 1247, "Lung Opacity": 2483, "Nodule/Mass": 2580,
               "Other lesion": 2203, "Pleural effusion": 2476, "Pleural thickening": 4842, "Pneumothorax": 226,
               "Pulmonary fibrosis": 4655}  # fmt: skip
VINDR_ANY = {"Aortic enlargement": 3067, "Atelectasis": 186, "Calcification": 452, "Cardiomegaly": 2300,
             "Consolidation": 353, "ILD": 386, "Infiltration": 613, "Lung Opacity": 1322, "No finding": 10606,
             "Nodule/Mass": 826, "Other lesion": 1134, "Pleural effusion": 1032, "Pleural thickening": 1981,
             "Pneumothorax": 96, "Pulmonary fibrosis": 1617}  # fmt: skip
VINDR_MAJORITY = {"Aortic enlargement": 2346, "Atelectasis": 62, "Calcification": 177, "Cardiomegaly": 1817,
                  "Consolidation": 121, "ILD": 152, "Infiltration": 245, "Lung Opacity": 547, "No finding": 10606,
                  "Nodule/Mass": 405, "Other lesion": 362, "Pleural effusion": 634, "Pleural thickening": 882,
                  "Pneumothorax": 58, "Pulmonary fibrosis": 1017}  # fmt: skip
LABEL_CELLS = {"1.0", "0.0", "-1.0", ""}
CHEXPERT_ORDER = tuple(CHEXPERT_CELLS)  # the observations, in the file's column order
#: The observations whose mention rules out No Finding (Support Devices does not).
PATHOLOGIES = tuple(k for k in CHEXPERT_ORDER if k not in ("No Finding", "Support Devices"))


def metadata(dataset: str, data_dir: Path, **options: str):
    """cxr14's table of films, read as training reads it."""
    from cxr14.config import TrainConfig
    from cxr14.data.pipeline.loaders import read_metadata

    return read_metadata(TrainConfig(dataset=dataset, data_dir=data_dir, **options))


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def wheel() -> zipfile.ZipFile:
    if not WHEEL.is_file():
        pytest.skip(f"real metadata: {WHEEL.relative_to(REPO)} is absent (`bash scripts/setup` downloads it: pip "
                    f"download torchxrayvision==1.5.7 --no-deps -d .cache/wheels)")  # fmt: skip
    with zipfile.ZipFile(WHEEL) as z:
        yield z


def member(wheel: zipfile.ZipFile, name: str) -> bytes:
    return wheel.read(DATA + name)


@pytest.fixture(scope="module")
def chexpert_text(wheel: zipfile.ZipFile) -> str:
    return gzip.decompress(member(wheel, "chexpert_train.csv.gz")).decode()


@pytest.fixture(scope="module")
def padchest_rows(wheel: zipfile.ZipFile) -> list[dict[str, str]]:
    return rows_of(gzip.decompress(member(wheel, PADCHEST_CSV)).decode())


@pytest.fixture(scope="module")
def vinbigdata_text(wheel: zipfile.ZipFile) -> str:
    return gzip.decompress(member(wheel, "vinbigdata-train.csv.gz")).decode()


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small phantoms of the four layouts with real counterparts (CheXpert's in a folder not named like it)."""
    root = tmp_path_factory.mktemp("fidelity")
    out = {}
    for layout in ("chexpert", "mimic", "padchest", "vindr"):
        out[layout] = root / ("my_chexpert" if layout == "chexpert" else layout)
        write_layout(out[layout], layout, n_patients=50, size=32, seed=3, workers=1, progress=False)
    return out


# --- the rules, as the real files follow them ----------------------------------------------------------------------


def labeler_rule_breaks(rows: list[dict[str, str]], where: str) -> list[str]:
    """The CheXpert labeler's cells (CheXpert's train.csv, MIMIC's chexpert and negbio files): 1.0 / 0.0 / -1.0 /
    blank; No Finding 1.0 or blank; No Finding 1.0 never beside a positive or uncertain pathology."""
    breaks = []
    for i, row in enumerate(rows):
        odd = [k for k in CHEXPERT_ORDER if row[k] not in LABEL_CELLS]
        if odd or row["No Finding"] not in ("1.0", ""):
            breaks.append(f"{where} row {i + 2}: {odd or 'No Finding'} {row['No Finding']!r}")
        if row["No Finding"] == "1.0" and any(row[k] in ("1.0", "-1.0") for k in PATHOLOGIES):
            breaks.append(f"{where} row {i + 2}: No Finding beside a finding")
    return breaks


def vindr_box_rule_breaks(rows: list[dict[str, str]], where: str) -> list[str]:
    """A box row: four numbers, x_min < x_max and y_min < y_max; a "No finding" row: no coordinates; never both
    kinds for one (film, reader)."""
    breaks, kinds = [], defaultdict(set)
    for i, row in enumerate(rows):
        corners = [row[c] for c in ("x_min", "y_min", "x_max", "y_max")]
        nothing = row["class_name"] == "No finding"
        kinds[row["image_id"], row["rad_id"]].add(nothing)
        if nothing and any(corners):
            breaks.append(f"{where} row {i + 2}: 'No finding' with coordinates")
        if not nothing:
            x0, y0, x1, y1 = (float(c) for c in corners)
            if not (0 <= x0 < x1 and 0 <= y0 < y1):
                breaks.append(f"{where} row {i + 2}: box {corners}")
    breaks += [f"{where}: {key} has 'No finding' and boxes" for key, k in kinds.items() if len(k) > 1]
    return breaks


def padchest_findings(cell: str) -> list[str] | None:
    """A Labels cell's findings (stripped, lower-case, empty ones dropped); None where it names none."""
    if cell.strip().lower() in ("", "nan"):
        return None
    found = [f.strip().lower() for f in ast.literal_eval(cell) if f.strip()]
    return found or None


# --- CheXpert -------------------------------------------------------------------------------------------------------


def test_chexpert_train_csv_read_as_counted(chexpert_text: str, tmp_path: Path) -> None:
    rows = rows_of(chexpert_text)
    patient = re.compile(r"^CheXpert-v1\.0-small/train/patient(\d{5})/study\d+/view\d+_(frontal|lateral)\.jpg$")
    frontal = [r for r in rows if r["Frontal/Lateral"] == "Frontal"]
    assert (len(rows), len(frontal)) == (223414, 191027)
    assert all(patient.match(r["Path"]) for r in rows)
    assert len({patient.match(r["Path"])[1] for r in rows}) == 64540
    assert len({patient.match(r["Path"])[1] for r in frontal}) == 64534
    cells = {k: (sum(r[k] == "1.0" for r in rows), sum(r[k] == "0.0" for r in rows), sum(r[k] == "-1.0" for r in rows))
             for k in CHEXPERT_ORDER}  # fmt: skip
    assert cells == CHEXPERT_CELLS
    assert labeler_rule_breaks(rows, "train.csv") == []
    assert sum(r["No Finding"] == r["Support Devices"] == "1.0" for r in rows) == 8808
    blank = [r for r in rows if r["No Finding"] == ""]
    ruled_out = {cells: sum(any(r[k] in cells for k in PATHOLOGIES) for r in blank) for cells in (("1.0",),
                 ("1.0", "-1.0"))}  # fmt: skip
    assert ruled_out == {("1.0",): 183519, ("1.0", "-1.0"): 194934}

    folder = tmp_path / "CheXpert-v1.0-small"  # as Stanford ships it: train.csv inside the dataset folder
    folder.mkdir()
    (folder / "train.csv").write_text(chexpert_text)
    (folder / "valid.csv").write_text(chexpert_text[: chexpert_text.index("\n") + 1])  # not in the wheel: no rows
    for uncertain in ("ignore", "ones"):
        meta = metadata("chexpert", folder, views="all", uncertain=uncertain)
        assert len(meta) == 223414 and len(np.unique(meta.patients)) == 64540
        assert meta.names[0] == "train/patient00001/study1/view1_frontal.jpg"  # the folder's own name dropped
        got = {k: (int((meta.labels[:, j] == 1).sum()), int((meta.labels[:, j] == 0).sum()))
               for j, k in enumerate(meta.label_names)}  # fmt: skip
        ones = uncertain == "ones"  # -1 read as positive; with ignore, unknown
        expected = {k: (p + u * ones, n) for k, (p, n, u) in CHEXPERT_CELLS.items()}
        expected["No Finding"] = (22381, 183519)  # blank beside a 1.0 pathology: negative, whatever the policy
        assert got == expected
    meta = metadata("chexpert", folder)  # frontal films only: the default
    assert len(meta) == 191027 and len(np.unique(meta.patients)) == 64534
    frontal_blank = [r for r in frontal if r["No Finding"] == ""]
    negative = sum(any(r[k] == "1.0" for k in PATHOLOGIES) for r in frontal_blank)
    assert negative == 161009 == int((meta.labels[:, meta.label_names.index("No Finding")] == 0).sum())


def test_chexpert_and_mimic_phantoms_follow_the_labeler_rules(phantoms: dict[str, Path]) -> None:
    train = rows_of((phantoms["chexpert"] / "train.csv").read_text())
    assert labeler_rule_breaks(train, "phantom train.csv") == []
    for kind in ("chexpert", "negbio"):
        text = gzip.decompress((phantoms["mimic"] / f"mimic-cxr-2.0.0-{kind}.csv.gz").read_bytes()).decode()
        assert labeler_rule_breaks(rows_of(text), f"phantom {kind}") == []
    for row in rows_of((phantoms["chexpert"] / "valid.csv").read_text()):  # the consensus: 0 and 1 only
        assert {row[k] for k in CHEXPERT_ORDER} <= {"0.0", "1.0"}
        assert row["No Finding"] == "0.0" or not any(row[k] == "1.0" for k in PATHOLOGIES)
    # the rules are not vacuous: the phantom has No Finding rows, and blanks where a finding is uncertain
    assert Counter(r["No Finding"] for r in train).keys() == {"1.0", ""}


def test_chexpert_phantom_paths_start_with_the_dataset_folder(phantoms: dict[str, Path], capsys) -> None:
    from cxr14.cli import main

    folder = phantoms["chexpert"]  # named my_chexpert: the paths do not follow --out's name
    for file in ("train.csv", "valid.csv"):
        paths = [r["Path"] for r in rows_of((folder / file).read_text())]
        part = "train" if file == "train.csv" else "valid"
        assert all(re.fullmatch(rf"CheXpert-v1\.0-small/{part}/patient\d{{5}}/study\d+/view\d_(frontal|lateral)\.jpg",
                                p) for p in paths)  # fmt: skip
        assert all((folder / p.split("/", 1)[1]).is_file() for p in paths)
    assert main(["download", "--check", "--dataset", "chexpert", "--data_dir", str(folder)]) == 0
    out = capsys.readouterr().out
    n = sum(len(rows_of((folder / f).read_text())) for f in ("train.csv", "valid.csv"))
    assert f"films: {n} of {n} present" in out


def test_chexpert_phantom_speaks_the_real_vocabulary(chexpert_text: str, phantoms: dict[str, Path]) -> None:
    real = rows_of(chexpert_text)
    phantom = rows_of((phantoms["chexpert"] / "train.csv").read_text())
    assert chexpert_text.split("\n", 1)[0] == (phantoms["chexpert"] / "train.csv").read_text().split("\n", 1)[0]
    for column in ("Sex", "Frontal/Lateral", "AP/PA", *CHEXPERT_ORDER):
        values = {r[column] for r in phantom}
        assert values <= {r[column] for r in real}, f"{column}: {values}"
    assert all(r["Age"].isdigit() for r in (*real[:1000], *phantom))


# --- PadChest -------------------------------------------------------------------------------------------------------


def test_padchest_csv_read_as_counted(wheel: zipfile.ZipFile, padchest_rows: list[dict[str, str]],
                                      tmp_path: Path) -> None:  # fmt: skip
    rows = padchest_rows
    assert len(rows) == 160861
    assert Counter(r["Projection"] for r in rows) == PADCHEST_PROJECTIONS
    found = [padchest_findings(r["Labels"]) for r in rows]
    assert Counter(r["Labels"] for r, f in zip(rows, found, strict=True) if f is None) == {"['']": 777, "nan": 103}
    kept = [(r, f) for r, f in zip(rows, found, strict=True) if f is not None]
    assert len(kept) == 159981 and len({r["PatientID"] for r, _ in kept}) == 67383
    assert sum(r["Projection"] in ("PA", "AP", "AP_horizontal") for r, _ in kept) == 110043
    assert {n: sum(n in f for _, f in kept) for n in PADCHEST_POSITIVE} == PADCHEST_POSITIVE

    (tmp_path / PADCHEST_CSV).write_bytes(member(wheel, PADCHEST_CSV))
    meta = metadata("padchest", tmp_path, labels=",".join(PADCHEST_POSITIVE), views="all")
    assert len(meta) == 159981 and len(np.unique(meta.patients)) == 67383
    assert dict(zip(meta.label_names, (meta.labels == 1).sum(0).tolist(), strict=True)) == PADCHEST_POSITIVE
    assert (meta.labels >= 0).all()  # PadChest labels each film it lists fully
    unlabelled = {r["ImageID"] for r, f in zip(rows, found, strict=True) if f is None}
    assert not unlabelled & set(meta.names)  # [''] is unknown, not negative for everything
    assert len(metadata("padchest", tmp_path, labels="normal")) == 110043  # frontal films only: the default


def test_padchest_phantom_speaks_the_real_vocabulary(padchest_rows: list[dict[str, str]], wheel: zipfile.ZipFile,
                                                     phantoms: dict[str, Path]) -> None:  # fmt: skip
    text = gzip.decompress(next(phantoms["padchest"].glob("PADCHEST_*.csv.gz")).read_bytes()).decode()
    phantom = rows_of(text)
    real_header = gzip.GzipFile(fileobj=io.BytesIO(member(wheel, PADCHEST_CSV))).readline().decode().rstrip("\n")
    assert text.split("\n", 1)[0] == real_header == ",".join(("", *PADCHEST_HEADER))
    for column in ("Projection", "PatientSex_DICOM", "Pediatric", "MethodLabel", "Modality_DICOM", "MethodProjection",
                   "PhotometricInterpretation_DICOM", "BitsStored_DICOM"):  # fmt: skip
        values = {r[column] for r in phantom}
        assert values <= {r[column] for r in padchest_rows}, f"{column}: {values}"
    assert {"PA", "AP", "AP_horizontal", "L"} <= {r["Projection"] for r in phantom}
    real_findings = {f for r in padchest_rows for f in padchest_findings(r["Labels"]) or ()}
    assert set(PADCHEST_NAMES.values()) | {"normal"} <= real_findings  # labels.SAME's PadChest spellings are real
    assert PADCHEST_NAMES["Mass"] == "pulmonary mass"
    assert {r["Labels"] for r in phantom if padchest_findings(r["Labels"]) is None} <= {"['']", "nan"}


def test_padchest_unlabelled_rows_are_unknown_not_negative(phantoms: dict[str, Path]) -> None:
    from cxr14.data.datasets.padchest import parse_labels

    assert parse_labels("['']") is None and parse_labels("nan") is None and parse_labels("") is None
    assert parse_labels("['cardiomegaly', '', ' Pleural  effusion']") == ["cardiomegaly", "pleural effusion"]
    text = gzip.decompress(next(phantoms["padchest"].glob("PADCHEST_*.csv.gz")).read_bytes()).decode()
    unlabelled = {r["ImageID"] for r in rows_of(text) if r["Labels"] in ("['']", "nan")}
    assert unlabelled  # the phantom has such rows
    meta = metadata("padchest", phantoms["padchest"], labels="normal,cardiomegaly", views="all")
    assert not {n.rsplit("/", 1)[-1] for n in meta.names} & unlabelled
    assert len(meta) == len(rows_of(text)) - len(unlabelled)


# --- VinDr-CXR ------------------------------------------------------------------------------------------------------


def test_vindr_boxes_and_votes_read_as_counted(vinbigdata_text: str, tmp_path: Path) -> None:
    from cxr14.data.datasets import vindr

    rows = rows_of(vinbigdata_text)
    assert len(rows) == 67914 and vindr_box_rule_breaks(rows, "vinbigdata-train.csv") == []
    boxed = [r for r in rows if r["x_min"]]
    assert len(boxed) == 36096 and len({r["image_id"] for r in boxed}) == 4394
    assert Counter(r["class_name"] for r in boxed) == VINDR_BOXES
    readers = defaultdict(set)
    marks = defaultdict(set)
    for r in rows:
        readers[r["image_id"]].add(r["rad_id"])
        marks[r["image_id"], r["rad_id"]].add(r["class_name"])
    assert len(readers) == 15000 and {len(v) for v in readers.values()} == {3}
    assert len({r["rad_id"] for r in rows}) == 17
    votes = {n: [sum(n in marks[i, rad] for rad in readers[i]) for i in readers] for n in VINDR_ANY}
    assert {n: sum(v >= 1 for v in votes[n]) for n in votes} == VINDR_ANY
    assert {n: sum(v >= 2 for v in votes[n]) for n in votes} == VINDR_MAJORITY

    annotations = tmp_path / "annotations"
    annotations.mkdir()
    (annotations / "annotations_train.csv").write_text(vinbigdata_text)  # PhysioNet's columns, and class_id
    boxes = vindr.read_boxes(tmp_path)
    assert len(boxes) == 36096 and boxes["image"].nunique() == 4394
    assert dict(Counter(boxes["finding"])) == VINDR_BOXES
    first = boxed[0]
    x0, y0, x1, y1 = (float(first[c]) for c in ("x_min", "y_min", "x_max", "y_max"))
    assert boxes.iloc[0].to_dict() == {"image": f"train/{first['image_id']}.dicom", "finding": first["class_name"],
                                       "x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, "reader": first["rad_id"]}
    # The image labels as PhysioNet lays them out (one row per film and reader), built from the same reads.
    names = sorted(VINDR_ANY)
    with (annotations / "image_labels_train.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image_id", "rad_id", *names])
        out.writerows([i, rad, *(int(n in m) for n in names)] for (i, rad), m in marks.items())
    (annotations / "image_labels_test.csv").write_text(",".join(["image_id", *names]) + "\n")
    for readers_rule, expected in (("any", VINDR_ANY), ("majority", VINDR_MAJORITY)):
        meta = metadata("vindr", tmp_path, readers=readers_rule)
        assert len(meta) == 15000
        assert dict(zip(meta.label_names, (meta.labels == 1).sum(0).tolist(), strict=True)) == expected


def test_vindr_phantom_boxes_follow_the_real_rules(vinbigdata_text: str, phantoms: dict[str, Path]) -> None:
    real = rows_of(vinbigdata_text)
    assert set(real[0]) == {*VINDR_BOX_HEADER, "class_id"}  # Kaggle's flavour: PhysioNet's columns and class_id
    assert {r["class_name"] for r in real} <= {*VINDR_LOCAL, "No finding"}  # spelt as the phantom spells them
    for part in ("train", "test"):
        text = (phantoms["vindr"] / "annotations" / f"annotations_{part}.csv").read_text()
        assert text.split("\n", 1)[0] == ",".join(VINDR_BOX_HEADER)
        rows = rows_of(text)
        assert vindr_box_rule_breaks(rows, f"phantom annotations_{part}.csv") == []
        assert {r["class_name"] for r in rows} <= {*VINDR_LOCAL, "No finding"}
        assert {"No finding"} < {r["class_name"] for r in rows}  # both kinds of row
    assert VINDR_LABELS[len(VINDR_LOCAL):] == ("COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases",
                                               "No finding")  # the 6 global labels: never boxed  # fmt: skip
