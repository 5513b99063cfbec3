"""Writing a phantom dataset in NIH's on-disk layout: parallel, reusable, never over foreign data."""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from cxr14.data.datasets.nih_boxes import BBOX_NAME, BOXED, format_boxes
from cxr14.data.phantom.cohort import _META_STREAM, Cohort, sample_cohort
from cxr14.data.phantom.render import render_with_boxes
from cxr14.errors import UserError
from cxr14.files import atomic_path, write_text
from cxr14.labels import NIH_LABELS, NO_FINDING

FORMAT_VERSION = 2  # 2: BBox_List_2017.csv added (images unchanged)
MANIFEST = "phantom.json"
CSV_NAME = "Data_Entry_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
BBOX_LIST = BBOX_NAME
#: Share of the test images with a boxed finding that get boxes (NIH boxed 880 of its 25,596 test images;
#: phantoms box more, so that a small set still scores every finding).
BOX_FRACTION = 0.25
_BOXED_INDEX = tuple(NIH_LABELS.index(name) for name in BOXED)
#: The real 2017 header, byte for byte (the trailing comma makes pandas add an `Unnamed: 11` column).
CSV_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
_IMAGE_STREAM = 1  # SeedSequence domain tag: images never share a stream with metadata
_PNG_LEVEL = 1  # zlib level: 6 would cost ~4x the encode time for ~10% smaller noisy files

# --------------------------------------------------------------------------------------------------
# Writing the dataset
# --------------------------------------------------------------------------------------------------


def _params(n_patients: int, size: int, seed: int) -> dict:
    return {"format_version": FORMAT_VERSION, "n_patients": n_patients, "size": size, "seed": seed}


def _read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_complete(out: Path, n_patients: int, size: int, seed: int) -> bool:
    """True when `out` holds a finished phantom dataset made with exactly these parameters.

    The manifest is written last, so its presence with matching parameters means every image, the CSV
    and both lists were written before it.
    """
    manifest = _read_manifest(Path(out))
    if manifest is None or not manifest.get("complete") or manifest.get("params") != _params(n_patients, size, seed):
        return False
    return all((Path(out) / name).is_file() for name in (CSV_NAME, TRAIN_VAL_LIST, TEST_LIST, BBOX_LIST))


def _render_file(task: tuple[Path, int, np.ndarray, int, int, bool, tuple[int, ...]]) -> dict[int, tuple]:
    """Render and save one image; return the boxes of its findings listed in the task (a top-level
    function, so worker processes can run it).

    Its random stream depends only on (seed, image index), so the files are the same whatever the
    number of workers or the order they run in.
    """
    path, index, findings, size, seed, rgba, boxed = task[:7]
    encoding = task[7] if len(task) > 7 else "png"
    rng = np.random.default_rng(np.random.SeedSequence([_IMAGE_STREAM, seed, index]))
    pixels, boxes = render_with_boxes(findings, size, rng, boxed)
    if encoding.startswith("lateral"):  # a side view's stand-in: the frontal film turned on its side
        pixels = np.ascontiguousarray(np.rot90(pixels))
        encoding = "png16" if encoding == "lateral16" else "jpeg"
    with atomic_path(path) as tmp:
        save_film(pixels, tmp, encoding, rgba)
    return boxes


def save_film(pixels: np.ndarray, path: Path, encoding: str, rgba: bool = False) -> None:
    """uint8 gray pixels as the datasets store their films: png (NIH: 8-bit, a few RGBA), jpeg (CheXpert, MIMIC:
    8-bit, quality 95), png16 (PadChest: 16-bit), dicom (VinDr-CXR: 12 bits stored in 16, MONOCHROME2)."""
    if encoding == "png":
        img = Image.fromarray(pixels, mode="L")
        if rgba:  # NIH ships 519 RGBA images; a loader must cope, so the phantoms have a few too
            img = img.convert("RGBA")
        img.save(path, format="PNG", compress_level=_PNG_LEVEL)
    elif encoding == "jpeg":
        Image.fromarray(pixels, mode="L").save(path, format="JPEG", quality=95)
    elif encoding == "png16":
        Image.fromarray(pixels.astype(np.uint16) * 257).save(path, format="PNG", compress_level=_PNG_LEVEL)
    elif encoding == "dicom":
        _save_dicom(pixels, path)
    else:
        raise ValueError(f"unknown film encoding {encoding!r}")


def _save_dicom(pixels: np.ndarray, path: Path) -> None:
    """A minimal Digital X-Ray DICOM file holding the 8-bit pixels as 12-bit values (0..4080)."""
    ds = dicom_dataset(pixels.astype(np.uint16) * 16)
    ds.save_as(path, enforce_file_format=True)


def dicom_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", modality: str = "DX",
                  sop_class: str = "1.2.840.10008.5.1.4.1.1.1.1") -> Any:  # fmt: skip
    """A minimal single-frame DICOM dataset of 12-bit values in 16-bit words (default: Digital X-Ray Image
    Storage - For Presentation), with fresh UIDs: what the phantom layouts write, and the tests' DICOM builder."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def pacs_film(pixels: np.ndarray, number: int, view: str = "PA") -> Any:
    """`dicom_dataset` with the header a film in a PACS carries: a study and series of its own, a patient
    ("PHANTOM<number>"), the view, CHEST, dates, an accession number. What the DICOM node's tests and
    benchmark send."""
    from pydicom.uid import generate_uid

    ds = dicom_dataset(pixels)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = f"PHANTOM{number}", "Phantom^Film", "", "O"
    ds.ViewPosition, ds.BodyPartExamined, ds.StudyDate, ds.StudyTime = view, "CHEST", "20240101", "120000"
    ds.AccessionNumber, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = f"A{number}", "1", 1, 1
    ds.ReferringPhysicianName = ""
    return ds


def _rgba_indices(n_images: int, seed: int) -> set[int]:
    """About 0.5% of the images (at least one once there are 20) are saved as RGBA."""
    if n_images < 20:
        return set()
    r = np.random.default_rng(np.random.SeedSequence([_META_STREAM, seed, 1]))
    k = max(1, round(0.005 * n_images))
    return {int(i) for i in r.choice(n_images, size=k, replace=False)}


def _boxed_images(cohort: Cohort, seed: int) -> dict[int, tuple[int, ...]]:
    """Image index -> the boxed findings it carries, for BOX_FRACTION of the test images that have any."""
    r = np.random.default_rng(np.random.SeedSequence([_META_STREAM, seed, 2]))
    candidates = np.flatnonzero(cohort.is_test & (cohort.labels[:, list(_BOXED_INDEX)].sum(1) > 0))
    chosen = candidates[r.random(len(candidates)) < BOX_FRACTION]
    return {int(i): tuple(j for j in _BOXED_INDEX if cohort.labels[i, j]) for i in chosen}


def _run(tasks: list, workers: int, progress: bool) -> list[dict[int, tuple]]:
    """Render on all cores (spawned workers: safe even when the caller has threads, e.g. torch).

    Returns each task's boxes, in task order.
    """
    bar = tqdm(total=len(tasks), desc="phantoms", unit="img", disable=not progress)
    out = []
    with bar:
        if workers <= 1:
            for task in tasks:
                out.append(_render_file(task))
                bar.update()
            return out
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for boxes in pool.map(_render_file, tasks, chunksize=max(1, min(32, len(tasks) // (4 * workers)))):
                out.append(boxes)
                bar.update()
    return out


def summarize(cohort: Cohort) -> dict:
    """Image, patient and per-label positive counts for each split (also stored in the manifest)."""
    test = cohort.is_test
    out = {"n_images": len(cohort.names), "n_patients": len(np.unique(cohort.patient))}
    for split, mask in (("train_val", ~test), ("test", test)):
        labels = cohort.labels[mask]
        counts = {name: int(n) for name, n in zip(NIH_LABELS, labels.sum(0), strict=True)}
        counts[NO_FINDING] = int((labels.sum(1) == 0).sum())
        out[split] = {
            "n_images": int(mask.sum()),
            "n_patients": len(np.unique(cohort.patient[mask])),
            "counts": counts,
        }
    return out


def _refuse_foreign(out: Path) -> None:
    """Never write over a folder that holds data a phantom run did not make (say, the real NIH set)."""
    if (out / MANIFEST).is_file() or not out.exists():
        return
    if any((out / name).exists() for name in (CSV_NAME, "Data_Entry_2017_v2020.csv", "images", TEST_LIST)):
        raise UserError(
            f"{out} already holds a dataset that cxr14 phantom did not write (no {MANIFEST}); refusing to "
            f"overwrite it. Choose an empty or new folder for --out."
        )


def write_dataset(
    out: Path,
    n_patients: int = 1000,
    size: int = 1024,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write a phantom NIH folder: Data_Entry_2017.csv, images/*.png, both split lists, BBox_List_2017.csv
    (boxes around the drawn signs of a sample of test images, in NIH's format), phantom.json.

    Returns a summary (image/patient counts, per-label positives per split, n_rgba, params). Reuses a
    finished folder made with the same parameters (returns at once). Otherwise it (re)writes only the
    files it owns; the manifest goes first away and last back, so an interrupted run never looks done.
    """
    out = Path(out)
    if is_complete(out, n_patients, size, seed):
        return _read_manifest(out)["summary"]
    _refuse_foreign(out)
    out.mkdir(parents=True, exist_ok=True)
    # Claim the folder before touching anything: an interrupted run leaves "complete": false.
    write_text(out / MANIFEST, json.dumps({"params": _params(n_patients, size, seed), "complete": False}) + "\n")
    (out / "images").mkdir(exist_ok=True)
    cohort = sample_cohort(n_patients, seed)
    rgba = _rgba_indices(len(cohort.names), seed)
    boxed = _boxed_images(cohort, seed)
    tasks = [
        (out / "images" / name, i, cohort.labels[i], size, seed, i in rgba, boxed.get(i, ()))
        for i, name in enumerate(cohort.names)
    ]
    boxes = _run(tasks, workers or os.cpu_count() or 1, progress)
    write_text(out / CSV_NAME, "".join(line + "\r\n" for line in [CSV_HEADER, *cohort.rows]))
    rows = [(cohort.names[i], NIH_LABELS[j], *boxes[i][j]) for i in sorted(boxed) for j in boxed[i] if j in boxes[i]]
    write_text(out / BBOX_LIST, format_boxes(rows))
    test = cohort.is_test
    names = np.array(cohort.names)
    write_text(out / TRAIN_VAL_LIST, "\n".join(sorted(names[~test])))
    write_text(out / TEST_LIST, "\n".join(sorted(names[test])))
    params = _params(n_patients, size, seed)
    summary = {**summarize(cohort), "n_rgba": len(rgba), "n_boxes": len(rows), "params": params}
    manifest = {"params": _params(n_patients, size, seed), "complete": True, "n_images": len(names), "summary": summary}
    write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return summary


def write_preview(path: Path, size: int = 256, seed: int = 0) -> None:
    """A labelled contact sheet PNG: a normal phantom, then one per finding (only that finding).

    All 15 panels share one patient's anatomy and film (the same seed), so each panel differs from the
    normal one by its sign alone. The 8 findings NIH boxed show their box (what BBox_List_2017.csv holds).
    """
    cols, rows = 5, 3
    cap = max(14, size // 10)
    sheet = Image.new("L", (cols * size, rows * (size + cap)), 0)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(10, int(cap * 0.7)))
    for j, title in enumerate((NO_FINDING, *NIH_LABELS)):
        findings = np.zeros(len(NIH_LABELS), dtype=np.uint8)
        if j:
            findings[j - 1] = 1
        x, y = (j % cols) * size, (j // cols) * (size + cap)
        boxed = {j - 1} & set(_BOXED_INDEX)
        pixels, boxes = render_with_boxes(findings, size, np.random.default_rng(seed), boxed)
        sheet.paste(Image.fromarray(pixels, mode="L"), (x, y))
        for bx, by, bw, bh in boxes.values():
            draw.rectangle((x + bx - 1, y + by - 1, x + bx + bw, y + by + bh), outline=255)
        draw.text((x + size / 2, y + size + cap / 2), title, fill=255, font=font, anchor="mm")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
