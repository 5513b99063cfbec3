"""Published ChestX-ray14 results (mean AUROC over the 14 findings), kept as data in one place.

The figures and their caveats come from the project's NIH notes (shared/nih/README.md). Random
(patient-wise or image-wise) splits read 0.01-0.03 higher than the official split and are listed
only to show why they cannot be compared.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published result: what was trained, on which split, its mean AUROC (text, may be a range), the source."""

    model: str
    split: str
    mean_auroc: str
    source: str


OFFICIAL = "official"
RANDOM = "random"

PUBLISHED: tuple[Published, ...] = (
    Published("the dataset paper's baseline (ImageNet CNN)", OFFICIAL, "about 0.745", "Wang et al., CVPR 2017"),
    Published("DenseNet-121, strong training recipe", OFFICIAL, "0.822", "the CNN baseline of Xiao et al., WACV 2023"),
    Published("ViT-B/16, MAE pre-training on 0.5M chest X-rays", OFFICIAL, "0.830",
              "Xiao et al., WACV 2023: the best verified figure"),
    Published("CheXNet (DenseNet-121)", RANDOM, "0.841", "Rajpurkar et al., 2017"),
    Published("reimplementations of CheXNet", RANDOM, "0.843-0.848", "various"),
)  # fmt: skip

#: Mean AUROC on the official test split above which a result should be audited for leakage first.
LEAKAGE_AUDIT_ABOVE = 0.85
#: Size of NIH's official test list (test_list.txt).
OFFICIAL_TEST_IMAGES = 25596

NOTE = (
    "Only results on the official patient-wise split (train_val_list.txt / test_list.txt, 25,596 test images of "
    "2,797 patients) are comparable with each other. Random splits read 0.01-0.03 higher (easier test patients, "
    "and sometimes a patient's follow-ups on both sides) and are not comparable. A mean AUROC above 0.85 on the "
    "official split calls for an audit for leakage before anyone believes it."
)
