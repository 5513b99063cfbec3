"""The code of each finding in the results: DICOM's own code sets where pydicom ships the concept, else cxr14's.

A PACS, a worklist or a downstream algorithm reads a finding by its code, not its name. Each label of every
label set cxr14 knows (NIH's 14, CheXpert's and MIMIC-CXR's 14, the PadChest and VinDr-CXR spellings of the
same findings in `labels.SAME`, and VinDr-CXR's other findings) has one below. Where pydicom's dictionary of
DICOM's codes (`pydicom.sr.codedict.codes`, PS3.16's SNOMED CT and DCM subsets) holds the concept, that code is
used; the rest come from cxr14's local coding scheme, "99CXR14" (PS3.16 8.2: a private scheme's designator starts
with 99), declared in each SR's Coding Scheme Identification Sequence. A local code's value is derived from the
label's name (`local_code`), so a user's own labels (a folder of classes, a hospital CSV) get a code too, the
same one on every machine. Atelectasis, consolidation, pneumonia, emphysema and hernia are in SNOMED CT, but not
in the subset pydicom ships: they are local codes here rather than codes typed in by hand.

`python -m cxr14.using.dicom.codes` prints the table the README shows.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from cxr14.labels import NIH_LABELS, SAME

if TYPE_CHECKING:
    from pydicom.sr.coding import Code

LOCAL_SCHEME = "99CXR14"
LOCAL_SCHEME_NAME = "cxr14 chest radiograph findings"
LOCAL_SCHEME_RESPONSIBLE = "cxr14 (github.com/cxr14); value = 'F' + first 10 hex digits of sha256(name)"
#: Code values are at most 16 characters (SH): "F" and 10 hexadecimal digits.
_LOCAL_DIGITS = 10

#: CheXpert's (and MIMIC-CXR's) labels, and VinDr-CXR's findings: label sets cxr14 reads without their own list in
#: `labels` (the datasets module takes them from the CSV header).
CHEXPERT = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
            "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
            "Fracture", "Support Devices")  # fmt: skip
VINDR = ("Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
         "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst",
         "Mediastinal shift", "Nodule/Mass", "Other lesion", "Pleural effusion", "Pleural thickening",
         "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other disease", "COPD", "Lung tumor", "Pneumonia",
         "Tuberculosis", "No finding")  # fmt: skip

#: Findings whose concept pydicom's dictionary holds: any spelling (compared as `_key` does) -> (scheme, keyword).
STANDARD = {
    "cardiomegaly": ("SCT", "Cardiomegaly"),
    "effusion": ("SCT", "PleuralEffusion"),  # NIH's Effusion is pleural effusion (labels.SAME)
    "pleural effusion": ("SCT", "PleuralEffusion"),
    "pneumothorax": ("SCT", "Pneumothorax"),
    "edema": ("SCT", "PulmonaryEdema"),  # on a chest film: pulmonary edema (labels.SAME)
    "pulmonary edema": ("SCT", "PulmonaryEdema"),
    "mass": ("SCT", "Mass"),
    "pulmonary mass": ("SCT", "Mass"),
    "nodule": ("SCT", "Nodule"),
    "fibrosis": ("SCT", "Fibrosis"),
    "pulmonary fibrosis": ("SCT", "Fibrosis"),
    "infiltration": ("DCM", "Infiltrate"),
    "infiltrates": ("DCM", "Infiltrate"),
    "lung opacity": ("DCM", "Opacity"),
    "no finding": ("SCT", "Normal"),
    "normal": ("SCT", "Normal"),
}


def _key(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


#: Another dataset's spelling of the same finding (labels.SAME) -> the row's first spelling: one concept, one code.
_SAME_AS = {_key(n): next(m for m in row if m) for row in SAME for n in row if n}


def local_code(name: str) -> tuple[str, str]:
    """(value, meaning) of a label in cxr14's local scheme: the value from sha256 of the label's normalised name
    (lower case, '_' as a space), so 'Pleural_Thickening' and 'pleural thickening' share it. `finding_code` first
    maps another dataset's spelling of the same finding (PadChest's 'hiatal hernia') to NIH's ('Hernia')."""
    digest = hashlib.sha256(_key(name).encode()).hexdigest()[:_LOCAL_DIGITS].upper()
    return f"F{digest}", name.replace("_", " ")[:64]


def finding_code(name: str) -> Code:
    """The code of one finding (any label name): DICOM's where pydicom has it, else the local scheme's."""
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    standard = STANDARD.get(_key(name))
    if standard is not None:
        found = getattr(getattr(codes, standard[0]), standard[1])
        return Code(found.value, found.scheme_designator, found.meaning)
    value, meaning = local_code(_SAME_AS.get(_key(name), name))
    return Code(value, LOCAL_SCHEME, meaning)


def known_labels() -> list[str]:
    """Every label of every label set cxr14 knows, once each (first spelling kept), NIH's first."""
    names = [*NIH_LABELS, *(n for row in SAME for n in row if n), *CHEXPERT, *VINDR]
    seen: dict[str, str] = {}
    for n in names:
        seen.setdefault(_key(n), n)
    return list(seen.values())


def coding_scheme_identification():
    """The Coding Scheme Identification Sequence item that declares the local scheme (for the SR's header)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = LOCAL_SCHEME
    item.CodingSchemeName = LOCAL_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = LOCAL_SCHEME_RESPONSIBLE[:64]
    return item


def markdown_table() -> str:
    """The README's table: label, scheme, code value, code meaning, one row per known label."""
    lines = ["| label | scheme | code | meaning |", "|---|---|---|---|"]
    for name in known_labels():
        c = finding_code(name)
        lines.append(f"| {name} | {c.scheme_designator} | {c.value} | {c.meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
