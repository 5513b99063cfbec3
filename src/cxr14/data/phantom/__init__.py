"""Synthetic frontal chest radiographs ("phantoms") in NIH ChestX-ray14's exact on-disk format.

Why: the real images (42 GiB) cannot be fetched everywhere, yet every layer of the project - CSV parsing,
patient splits, RGBA decoding, training, AUROC - should run on data with NIH's exact shape. Each of the 14
findings gets a visible sign drawn where a radiologist would look, so a small model trained on phantoms
learns real signal and a demo's AUROC means something (and a broken pipeline shows up as chance AUROC).

Geometry lives in "anatomy" coordinates: x in [-1, 1] from image left (the patient's right) to image right
(the patient's left, where the heart bulges), y in [-1, 1] from top to bottom. The whole patient is then
rotated, shifted and scaled into the picture. Intensity is built as a density map (bright = dense: bone,
fluid, soft tissue; dark = air), then exposure, gamma and noise turn it into 8 bits.

Randomness is split into independent streams (anatomy, film, one per finding) so that adding a finding
changes only that finding's sign: the tests rely on it, and so does the preview sheet.
"""

from cxr14.data.phantom.cohort import Cohort, sample_cohort
from cxr14.data.phantom.command import run_phantom
from cxr14.data.phantom.render import render, render_with_boxes
from cxr14.data.phantom.writer import (
    BBOX_LIST,
    CSV_HEADER,
    CSV_NAME,
    FORMAT_VERSION,
    MANIFEST,
    TEST_LIST,
    TRAIN_VAL_LIST,
    is_complete,
    summarize,
    write_dataset,
    write_preview,
)

__all__ = [
    "BBOX_LIST",
    "CSV_HEADER",
    "CSV_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "TEST_LIST",
    "TRAIN_VAL_LIST",
    "Cohort",
    "is_complete",
    "render",
    "render_with_boxes",
    "run_phantom",
    "sample_cohort",
    "summarize",
    "write_dataset",
    "write_preview",
]
