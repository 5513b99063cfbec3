"""Published results, kept as data, each with the test set it was measured on: a figure is shown beside an
evaluation only when that evaluation scored the same findings on the same films.

NIH ChestX-ray14's figures (mean AUROC over its 14 findings; from the project's NIH notes, shared/nih/README.md):
random (patient-wise or image-wise) splits read 0.01-0.03 higher than the official split and are listed only to
show why they cannot be compared. Kermany et al. 2018's (pneumonia against normal on the 624 pediatric test
films of their release): recognised by the test films' names (`images_sha256`), since the same films can arrive
as class folders, a csv or a predictions file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cxr14.labels import NIH_LABELS


@dataclass(frozen=True)
class Published:
    """One published result: what was trained, on which split, its figures (text, in the benchmark's columns), the
    source."""

    model: str
    split: str
    figures: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Benchmark:
    """A test set with published results: the figures' columns, the results, and what makes them comparable."""

    caption: str
    columns: tuple[str, ...]  # "mean AUROC" or "AUROC", "accuracy", "sensitivity", "specificity"
    rows: tuple[Published, ...]
    note: str


OFFICIAL = "official"
RANDOM = "random"

NIH = Benchmark(
    "Published mean AUROC over the 14 findings",
    ("mean AUROC",),
    (
        Published("the dataset paper's baseline (ImageNet CNN)", OFFICIAL, ("about 0.745",), "Wang et al., CVPR 2017"),
        Published("DenseNet-121, strong training recipe", OFFICIAL, ("0.822",),
                  "the CNN baseline of Xiao et al., WACV 2023"),
        Published("ViT-B/16, MAE pre-training on 0.5M chest X-rays", OFFICIAL, ("0.830",),
                  "Xiao et al., WACV 2023: the best verified figure"),
        Published("CheXNet (DenseNet-121)", RANDOM, ("0.841",), "Rajpurkar et al., 2017"),
        Published("reimplementations of CheXNet", RANDOM, ("0.843-0.848",), "various"),
    ),
    "Only results on the official patient-wise split (train_val_list.txt / test_list.txt, 25,596 test images of "
    "2,797 patients) are comparable with each other. Random splits read 0.01-0.03 higher (easier test patients, "
    "and sometimes a patient's follow-ups on both sides) and are not comparable. A mean AUROC above 0.85 on the "
    "official split calls for an audit for leakage before anyone believes it.",
)  # fmt: skip

KERMANY = Benchmark(
    "Published results on the 624 test films of Kermany et al.'s pediatric pneumonia set",
    ("AUROC", "accuracy", "sensitivity", "specificity"),
    (
        Published("Inception-v3 from ImageNet weights, full-resolution films", "the release's test folder (624)",
                  ("0.968", "92.8%", "93.2%", "90.1%"), "Kermany et al., Cell 172(5), 2018"),
    ),
    "The same 624 test films (234 normal, 390 pneumonia) as the paper, so the figures measure the same thing. "
    "The paper's model started from ImageNet weights and read the full-resolution films; a model trained here on "
    "the 224 px copies, from scratch, starts further back. Accuracy, sensitivity and specificity are at a "
    "threshold chosen before the test films were seen (here: on validation).",
)  # fmt: skip

#: sha256 of the sorted file names of Kermany et al.'s 624 test films (`images_fingerprint`).
KERMANY_TEST_SHA256 = "4b192f6ce167d2956f8bbf3f6ede75232fff4dba5d90df56dca8902539f00939"
#: Mean AUROC on the official test split above which a result should be audited for leakage first.
LEAKAGE_AUDIT_ABOVE = 0.85
#: Size of NIH's official test list (test_list.txt).
OFFICIAL_TEST_IMAGES = 25596


def images_fingerprint(names: Iterable[str]) -> str:
    """sha256 of the sorted file names (without folders) of a scored split: which films, whatever the layout."""
    listed = sorted(os.path.basename(str(n).replace("\\", "/")) for n in names)
    return hashlib.sha256("\n".join(listed).encode()).hexdigest()


def benchmark_for(metrics: dict[str, Any]) -> Benchmark | None:
    """The published results an evaluation can stand beside: NIH's for NIH's 14 findings on NIH's data,
    Kermany et al.'s for pneumonia on their test films; None for anything else (the report leaves them out)."""
    labels = tuple(metrics.get("labels") or metrics.get("per_class") or ())
    data = metrics.get("data") or {}
    if labels == NIH_LABELS and data.get("dataset", "nih") == "nih":
        return NIH
    if [n.strip().lower() for n in labels] == ["pneumonia"] and data.get("images_sha256") == KERMANY_TEST_SHA256:
        return KERMANY
    return None
