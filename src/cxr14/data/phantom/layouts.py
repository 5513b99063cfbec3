"""Phantom datasets in other datasets' exact layouts: `cxr14 phantom --layout csv|chexpert|mimic|padchest|vindr`.

The films and their NIH findings come from the same cohort and renderer as the NIH-layout phantoms; each layout
then writes them as that dataset ships its own (file names, folders, image format, the metadata files with their
exact headers and value spellings), with the findings named in the dataset's label set (`labels.SAME`; CheXpert's
Lung Lesion is a Mass or a Nodule) and, where the dataset has them, uncertain and blank labels. The layouts follow
the datasets' own documentation (see the README's dataset sections) and the value rules of their real metadata
files (tests/test_real_metadata.py checks both on the files torchxrayvision ships); the readers in `data.datasets`
read them back.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cxr14.data.phantom.boxes import Box
from cxr14.data.phantom.cohort import _META_STREAM, Cohort, sample_cohort
from cxr14.data.phantom.writer import MANIFEST, _refuse_foreign, _run
from cxr14.errors import UserError
from cxr14.files import atomic_path, write_text
from cxr14.labels import NIH_LABELS, SAME

LAYOUTS = ("nih", "csv", "folder", "chexpert", "mimic", "padchest", "vindr")
FORMAT_VERSION = 2  # 2: CheXpert-v1.0-small/ paths, No Finding as the labeler writes it, VinDr's box files
#: The csv layout's three labels of its own: two named as NIH's (fine-tuning keeps those rows), one new.
CSV_LABELS = {"Cardiomegaly": ("Cardiomegaly",), "Effusion": ("Effusion",), "Opacity": ("Infiltration",
              "Consolidation")}  # fmt: skip
CHEXPERT_LABELS = {"Atelectasis": ("Atelectasis",), "Cardiomegaly": ("Cardiomegaly",), "Consolidation":
                   ("Consolidation",), "Edema": ("Edema",), "Enlarged Cardiomediastinum": (), "Fracture": (),
                   "Lung Lesion": ("Mass", "Nodule"), "Lung Opacity": ("Infiltration",), "No Finding": None,
                   "Pleural Effusion": ("Effusion",), "Pleural Other": ("Pleural_Thickening",), "Pneumonia":
                   ("Pneumonia",), "Pneumothorax": ("Pneumothorax",), "Support Devices": ()}  # fmt: skip
CHEXPERT_ORDER = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                  "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                  "Fracture", "Support Devices")  # fmt: skip
#: The folder name every real CheXpert Path cell starts with (the small download's), whatever --out is called.
CHEXPERT_FOLDER = "CheXpert-v1.0-small"
#: The observations that rule out No Finding: all but No Finding itself and Support Devices (a tube is no disease;
#: 8,808 real train.csv rows have both No Finding and Support Devices at 1.0).
PATHOLOGIES = tuple(k for k in CHEXPERT_ORDER if k not in ("No Finding", "Support Devices"))


def _rng(seed: int, tag: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([_META_STREAM, seed, 100 + tag]))


#: CheXpert observations the phantoms do not draw: positive at random, this often (so every label can be trained;
#: a model can only guess them, AUROC about 0.5), Enlarged Cardiomediastinum with Cardiomegaly more often.
UNDRAWN = {"Enlarged Cardiomediastinum": 0.05, "Fracture": 0.05, "Support Devices": 0.15}


def _findings(cohort: Cohort, i: int, wanted: tuple[str, ...] | None) -> int:
    """1 if image i shows any of `wanted` NIH findings (None: no finding at all), else 0."""
    row = cohort.labels[i]
    if wanted is None:
        return int(row.sum() == 0)
    return int(any(row[NIH_LABELS.index(w)] for w in wanted))


def _chexpert_values(cohort: Cohort, i: int, r: np.random.Generator) -> dict[str, int]:
    """The 14 observations of image i: drawn findings by name, the undrawn ones at random; No Finding only where
    no pathology is positive (an undrawn one included)."""
    values = {k: _findings(cohort, i, w) for k, w in CHEXPERT_LABELS.items() if w != ()}
    cardio = values["Cardiomegaly"]
    for k, p in UNDRAWN.items():
        values[k] = int(r.random() < (0.5 if k == "Enlarged Cardiomediastinum" and cardio else p))
    values["No Finding"] = int(values["No Finding"] and not any(values[k] for k in PATHOLOGIES))
    return values


def _labeler_cells(values: dict[str, int], r: np.random.Generator, order: Sequence[str]) -> list[str]:
    """One row of the CheXpert labeler's cells (CheXpert's train.csv, MIMIC's chexpert and negbio files), in
    `order`: each observation 1.0 / 0.0 / -1.0 / blank, and No Finding 1.0 or blank, never 0.0 or -1.0, and 1.0
    only where no pathology is positive or uncertain in the same row (so the real files; Support Devices aside)."""
    cells = {k: _cell(values[k], r, 0.3 * (1 - values[k]), 0.05) for k in order if k != "No Finding"}
    clear = values["No Finding"] and not any(cells[k] in ("1.0", "-1.0") for k in PATHOLOGIES)
    cells["No Finding"] = "1.0" if clear else ""
    return [cells[k] for k in order]


def _cell(value: int, rng: np.random.Generator, blank: float, uncertain: float, style: str = "float") -> str:
    """A label cell as the dataset writes it, sometimes blank (unmentioned) or -1 (uncertain)."""
    draw = rng.random()
    if draw < blank:
        return ""
    if draw < blank + uncertain:
        return "-1.0" if style == "float" else "-1"
    return (f"{value:.1f}" if style == "float" else str(value))


def _csv(rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _val_patients(cohort: Cohort, seed: int) -> set[int]:
    """About 10% of the training patients, for the layouts whose dataset has its own validation split."""
    train = sorted(set(cohort.patient[~cohort.is_test].tolist()))
    r = _rng(seed, 0)
    return {p for p in train if r.random() < 0.1}


def write_csv(out: Path, cohort: Cohort, size: int, seed: int) -> tuple[list, dict]:
    """images/NNNNNNNN_KKK.png and dataset.csv (path, patient, split, sex, age, view, 3 labels 1/0/-1/blank)."""
    r, val = _rng(seed, 1), _val_patients(cohort, seed)
    header = ["path", "patient", "split", "sex", "age", "view", *CSV_LABELS]
    rows, tasks = [header], []
    for i, name in enumerate(cohort.names):
        p = int(cohort.patient[i])
        split = "test" if cohort.is_test[i] else ("val" if p in val else "train")
        meta = cohort.rows[i].split(",")
        cells = [_cell(_findings(cohort, i, w), r, 0.04, 0.03, "int") for w in CSV_LABELS.values()]
        rows.append([f"images/{name}", f"P{p:05d}", split, meta[5], meta[4], meta[6], *cells])
        tasks.append((out / "images" / name, i, cohort.labels[i], size, seed, False, (), "png"))
    return tasks, {"dataset.csv": _csv(rows)}


def write_folder(out: Path, cohort: Cohort, size: int, seed: int) -> tuple[list, dict]:
    """train/ and test/ folders of class folders, NORMAL (no finding) and ABNORMAL (any), as image sets are often
    shared; NIH's file names, so that `--patient_pattern nih` finds the patients. No metadata file at all."""
    tasks = []
    for i, name in enumerate(cohort.names):
        part = "test" if cohort.is_test[i] else "train"
        kind = "ABNORMAL" if cohort.labels[i].any() else "NORMAL"
        tasks.append((out / part / kind / name, i, cohort.labels[i], size, seed, False, (), "png"))
    return tasks, {}


def write_chexpert(out: Path, cohort: Cohort, size: int, seed: int) -> tuple[list, dict]:
    """train.csv / valid.csv with Stanford's header; train/ and valid/patientNNNNN/studyK/viewV_frontal.jpg, and
    a lateral film for about one study in five (Frontal/Lateral = Lateral, AP/PA blank). `out` stands for the
    CheXpert-v1.0-small folder: the Path cells start with that name, as Stanford's do, whatever `out` is called."""
    r = _rng(seed, 2)
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_ORDER]
    files = {"train.csv": [header], "valid.csv": [header]}
    tasks = []
    for i in range(len(cohort.names)):
        meta = cohort.rows[i].split(",")
        test = bool(cohort.is_test[i])
        part, file = ("valid", "valid.csv") if test else ("train", "train.csv")
        study = f"{part}/patient{int(cohort.patient[i]):05d}/study{int(cohort.followup[i]) + 1}"
        sex = {"M": "Male", "F": "Female"}[meta[5]]
        views = [("view1_frontal.jpg", "Frontal", meta[6], "jpeg")]
        if r.random() < 0.2:
            views.append(("view2_lateral.jpg", "Lateral", "", "lateral"))
        for view_file, fl, appa, enc in views:
            values = _chexpert_values(cohort, i, r)
            # valid.csv: 0/1 only (radiologists' consensus); train.csv: blanks (unmentioned) and -1 (uncertain)
            cells = ([f"{values[k]:.1f}" for k in CHEXPERT_ORDER] if test else
                     _labeler_cells(values, r, CHEXPERT_ORDER))  # fmt: skip
            files[file].append([f"{CHEXPERT_FOLDER}/{study}/{view_file}", sex, meta[4], fl, appa, *cells])
            tasks.append((out / study / view_file, i, cohort.labels[i], size, seed, False, (), enc))
    return tasks, {k: _csv(v) for k, v in files.items()}


def write_mimic(out: Path, cohort: Cohort, size: int, seed: int) -> tuple[list, dict]:
    """files/pXX/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg and the four mimic-cxr-2.0.0-*.csv.gz files: metadata and
    split per image, chexpert and negbio labels per study (here: each phantom film is its own study)."""
    r, val = _rng(seed, 3), _val_patients(cohort, seed)
    labels = sorted(CHEXPERT_LABELS)  # the label files' columns are alphabetical
    meta_rows = [["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
                  "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                  "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]]  # fmt: skip
    split_rows = [["dicom_id", "study_id", "subject_id", "split"]]
    label_rows = {k: [["subject_id", "study_id", *labels]] for k in ("chexpert", "negbio")}
    tasks = []
    for i in range(len(cohort.names)):
        p = int(cohort.patient[i])
        subject, study = f"1{p:07d}", f"5{i:07d}"
        split = "test" if cohort.is_test[i] else ("validate" if p in val else "train")
        view = cohort.rows[i].split(",")[6]
        images = [(view, "jpeg")] + ([("LATERAL", "lateral")] if r.random() < 0.2 else [])
        for k, (position, enc) in enumerate(images):
            dicom = hashlib.sha1(f"{seed}-{i}-{k}".encode()).hexdigest()[:40]
            dicom = "-".join(dicom[j : j + 8] for j in range(0, 40, 8))
            meta_rows.append([dicom, subject, study, "CHEST (PA AND LAT)", position, str(size), str(size), "21800506",
                              "213014.531", "CHEST (PA AND LAT)", "postero-anterior", "Erect"])  # fmt: skip
            split_rows.append([dicom, study, subject, split])
            tasks.append((out / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg", i,
                          cohort.labels[i], size, seed, False, (), enc))  # fmt: skip
        if r.random() < 0.03:
            continue  # a study without a label row (MIMIC has them): its images' labels are unknown
        for kind in label_rows:
            values = _chexpert_values(cohort, i, r)
            label_rows[kind].append([subject, study, *_labeler_cells(values, r, labels)])
    texts = {"mimic-cxr-2.0.0-metadata.csv.gz": _csv(meta_rows), "mimic-cxr-2.0.0-split.csv.gz": _csv(split_rows)}
    texts.update({f"mimic-cxr-2.0.0-{k}.csv.gz": _csv(v) for k, v in label_rows.items()})
    return tasks, texts


PADCHEST_HEADER = ("ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth",
                   "PatientSex_DICOM", "ViewPosition_DICOM", "Projection", "MethodProjection", "Pediatric",
                   "Modality_DICOM", "Manufacturer_DICOM", "PhotometricInterpretation_DICOM",
                   "PixelRepresentation_DICOM", "PixelAspectRatio_DICOM", "SpatialResolution_DICOM", "BitsStored_DICOM",
                   "WindowCenter_DICOM", "WindowWidth_DICOM", "Rows_DICOM", "Columns_DICOM", "XRayTubeCurrent_DICOM",
                   "Exposure_DICOM", "ExposureInuAs_DICOM", "ExposureTime", "RelativeXRayExposure_DICOM", "ReportID",
                   "Report", "MethodLabel", "Labels", "Localizations", "LabelsLocalizationsBySentence", "labelCUIS",
                   "LocalizationsCUIS")  # fmt: skip
#: NIH findings -> PadChest's spellings (labels.SAME), for the Labels lists.
PADCHEST_NAMES = {row[0]: row[2] for row in SAME if row[0] and row[2]}
VINDR_LABELS = ("Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
                "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity",
                "Lung cavity", "Lung cyst", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
                "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion", "COPD",
                "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding")  # fmt: skip
VINDR_FROM_NIH = {row[3]: (row[0],) for row in SAME if row[0] and row[3]} | {"Nodule/Mass": ("Mass", "Nodule")}


def write_padchest(out: Path, cohort: Cohort, size: int, seed: int) -> tuple[list, dict]:
    """PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz (pandas' unnamed index column first, as BIMCV's
    file has it) and 16-bit PNGs in the numbered folders of the download (DATA_DIR/<ImageDir>/<ImageID>); a few
    lateral films (Projection L), AP films as AP_horizontal or AP (about 3 to 1, as the real file), and the real
    file's unlabelled rows: a Labels cell of [''] (777 real rows) or nan (103), and now and then an empty finding
    inside a list ("['cardiomegaly', '', 'unchanged']")."""
    r = _rng(seed, 4)
    rows = [["", *PADCHEST_HEADER]]
    tasks = []
    for i in range(len(cohort.names)):
        meta = cohort.rows[i].split(",")
        study = hashlib.sha1(f"{seed}-study-{i}".encode()).hexdigest()[:38]
        found = [PADCHEST_NAMES[n] for n, v in zip(NIH_LABELS, cohort.labels[i], strict=True) if v] or ["normal"]
        if r.random() < 0.02:
            found.append("")  # an empty finding among the others, as on 2,264 real rows
        cell = "[" + ", ".join(repr(("" if k == 0 or not f or r.random() > 0.2 else " ") + f)
                               for k, f in enumerate(found)) + "]"  # fmt: skip
        unlabelled = r.random()
        if unlabelled < 0.02:
            cell = "['']" if unlabelled < 0.015 else "nan"  # PadChest's rows without labels
        lateral = r.random() < 0.15
        frontal = meta[6] if meta[6] == "PA" or r.random() < 0.25 else "AP_horizontal"
        image = f"{study}_{r.integers(0, 10**6):06d}.png"
        image_dir = str(int(cohort.patient[i]) % 5)
        birth = f"{2015 - int(meta[4])}.0"
        values = {"ImageID": image, "ImageDir": image_dir, "StudyDate_DICOM": "20150622", "StudyID": study,
                  "PatientID": f"{int(cohort.patient[i]):032d}", "PatientBirth": birth, "PatientSex_DICOM": meta[5],
                  "Projection": "L" if lateral else frontal,
                  "MethodProjection": "Manual review of DICOM fields", "Pediatric": "No", "Modality_DICOM": "CR",
                  "PhotometricInterpretation_DICOM": "MONOCHROME2", "BitsStored_DICOM": "12", "MethodLabel":
                  "Physician", "Labels": cell, "Rows_DICOM": str(size), "Columns_DICOM": str(size)}  # fmt: skip
        rows.append([str(i), *(values.get(h, "") for h in PADCHEST_HEADER)])
        tasks.append((out / image_dir / image, i, cohort.labels[i], size, seed, False, (),
                      "lateral16" if lateral else "png16"))  # fmt: skip
    return tasks, {"PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz": _csv(rows)}


#: VinDr-CXR's 22 local findings (each marked with a box, per reader) and, after them, its 6 global ones (no box).
VINDR_LOCAL = VINDR_LABELS[:22]
#: The local findings the phantoms draw -> the NIH findings (indices) whose signs their boxes surround.
VINDR_DRAWN = {n: tuple(NIH_LABELS.index(w) for w in VINDR_FROM_NIH[n]) for n in VINDR_LOCAL if n in VINDR_FROM_NIH}
#: annotations_train.csv / annotations_test.csv (PhysioNet's release): a row per box, corners in the DICOM's pixels.
VINDR_BOX_HEADER = ("image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max")


def write_vindr(out: Path, cohort: Cohort, size: int, seed: int) -> tuple[list, dict]:
    """train/ and test/<image_id>.dicom; annotations/image_labels_train.csv (three readers per film, each missing
    a finding now and then, No finding = 1 exactly when the reader marked nothing) and image_labels_test.csv (one
    consensus row per film, no rad_id, 'Other disease'); annotations/annotations_train.csv and
    annotations_test.csv, each reader's boxes (`_vindr_boxes`), written once the films are drawn."""
    r = _rng(seed, 5)
    train_rows = [["image_id", "rad_id", *VINDR_LABELS]]
    test_rows = [["image_id", *("Other disease" if n == "Other diseases" else n for n in VINDR_LABELS)]]
    tasks, marks = [], []
    for i in range(len(cohort.names)):
        image = hashlib.md5(f"{seed}-vindr-{i}".encode()).hexdigest()
        truth = {n: _findings(cohort, i, VINDR_FROM_NIH[n]) if n in VINDR_FROM_NIH else int(r.random() < 0.05)
                 for n in VINDR_LABELS if n != "No finding"}  # fmt: skip
        truth["No finding"] = int(not any(truth.values()))
        test = bool(cohort.is_test[i])
        readers = []
        if test:
            test_rows.append([image, *(str(truth[n]) for n in VINDR_LABELS)])
            readers.append((f"R{r.integers(1, 18)}", truth))  # the consensus, boxed by one of its readers
        else:
            for reader in r.choice(np.arange(1, 18), size=3, replace=False):
                seen = {n: int(v and r.random() > 0.15) for n, v in truth.items() if n != "No finding"}  # misses
                seen["No finding"] = int(not any(seen.values()))
                train_rows.append([image, f"R{reader}", *(str(seen[n]) for n in VINDR_LABELS)])
                readers.append((f"R{reader}", seen))
        part = "test" if test else "train"
        boxed = tuple(j for n in VINDR_DRAWN for j in VINDR_DRAWN[n] if cohort.labels[i, j])
        marks.append((len(tasks), image, part, readers))
        tasks.append((out / part / f"{image}.dicom", i, cohort.labels[i], size, seed, False, boxed, "dicom"))
    return tasks, {
        "annotations/image_labels_train.csv": _csv(train_rows),
        "annotations/image_labels_test.csv": _csv(test_rows),
        "annotations/annotations_train.csv": lambda drawn: _vindr_boxes(marks, drawn, "train", size, seed),
        "annotations/annotations_test.csv": lambda drawn: _vindr_boxes(marks, drawn, "test", size, seed),
    }


def _vindr_boxes(marks: list, drawn: list[dict[int, Box]], part: str, size: int, seed: int) -> str:
    """annotations_<part>.csv: per film and reader, a row per box around each local finding the reader marked, or
    one 'No finding' row with empty coordinates (a reader who marked only global findings has no row).

    A drawn finding's box is its sign's (`render_with_boxes`): exact for the test films' consensus, each edge moved
    by up to a tenth of the box for a training reader (readers' boxes differ). Nodule/Mass boxes each drawn mass
    and nodule. A local finding the phantoms do not draw (positive at random, like Aortic enlargement) is boxed at
    random: no model can find it, as none can predict it better than chance.
    """
    r = _rng(seed, 6 if part == "train" else 7)
    rows = [list(VINDR_BOX_HEADER)]
    for task, image, film_part, readers in marks:
        if film_part != part:
            continue
        for rad, seen in readers:
            if seen["No finding"]:
                rows.append([image, rad, "No finding", "", "", "", ""])
                continue
            for name in (n for n in VINDR_LOCAL if seen[n]):
                found = [drawn[task][j] for j in VINDR_DRAWN.get(name, ()) if j in drawn[task]]
                for x, y, w, h in found or [_random_box(r, size)]:
                    corners = np.array([x, y, x + w, y + h], dtype=np.float64)
                    if part == "train":
                        corners += r.uniform(-0.1, 0.1, 4) * np.array([w, h, w, h])
                        corners = np.clip(corners, 0, size)
                        corners[2:] = np.maximum(corners[2:], corners[:2] + 1)
                    rows.append([image, rad, name, *(str(round(float(v), 2)) for v in corners)])
    return _csv(rows)


def _random_box(r: np.random.Generator, size: int) -> Box:
    w, h = (int(v) for v in r.integers(max(2, size // 10), max(3, size // 3), 2))
    return int(r.integers(0, size - w + 1)), int(r.integers(0, size - h + 1)), w, h


#: Each writer returns its render tasks and its metadata files' texts; a text that depends on the drawn films (the
#: VinDr boxes) is a function of the boxes `_run` returns, one dict per task, called once the films are drawn.
WRITERS: dict[str, Callable[[Path, Cohort, int, int], tuple[list, dict]]] = {
    "csv": write_csv, "folder": write_folder, "chexpert": write_chexpert, "mimic": write_mimic,
    "padchest": write_padchest, "vindr": write_vindr,
}  # fmt: skip


def write_layout(out: Path, layout: str, n_patients: int, size: int, seed: int, workers: int | None = None,
                 progress: bool = True) -> dict:  # fmt: skip
    """Render a phantom dataset in `layout`'s exact files; reuse a complete one made with the same settings."""
    out = Path(out)
    params = {"format_version": FORMAT_VERSION, "layout": layout, "n_patients": n_patients, "size": size,
              "seed": seed}  # fmt: skip
    try:
        done = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        done = None
    if done and done.get("complete") and done.get("params") == params:
        return done["summary"]
    _refuse_foreign(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise UserError(f"{out} is not empty and cxr14 phantom did not write it; choose a new or empty --out.")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / MANIFEST, json.dumps({"params": params, "complete": False}) + "\n")
    cohort = sample_cohort(n_patients, seed)
    tasks, texts = WRITERS[layout](out, cohort, size, seed)
    for task in tasks:
        task[0].parent.mkdir(parents=True, exist_ok=True)
    drawn = _run(tasks, workers or os.cpu_count() or 1, progress)
    for name, text in texts.items():
        text = text(drawn) if callable(text) else text
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".gz"):
            with atomic_path(path) as tmp:
                tmp.write_bytes(gzip.compress(text.encode(), mtime=0))
        else:
            write_text(path, text)
    summary = {"layout": layout, "n_images": len(tasks), "n_patients": len(np.unique(cohort.patient)),
               "files": sorted(texts)}  # fmt: skip
    write_text(out / MANIFEST, json.dumps({"params": params, "complete": True, "summary": summary}, indent=1) + "\n")
    return summary
