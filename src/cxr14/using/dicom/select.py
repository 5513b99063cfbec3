"""Which DICOM objects are films for the model: frontal chest radiographs, and nothing cxr14 wrote itself.

A PACS sends whatever a study holds - laterals, reports, presentation states, other algorithms' results, our
own results coming back - and the model was trained on one thing: a frontal (PA or AP) chest radiograph. So a
film is scored only when its header says it is one; everything else is skipped with a reason that names no
patient (the caller logs it beside the SOP Instance UID alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxr14.using.dicom.uids import is_own_device

if TYPE_CHECKING:
    import pydicom

#: Radiograph storage classes a chest film arrives as: CR, and DX For Presentation (For Processing is raw detector
#: data that the modality has not yet made into a picture).
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
RADIOGRAPH_MODALITIES = ("CR", "DX")
#: Result objects, never films: structured reports, presentation states, segmentations, secondary captures.
RESULT_MODALITIES = ("SR", "PR", "SEG", "KO", "OT", "DOC")
FRONTAL_VIEWS = ("PA", "AP")
CHEST_PARTS = ("CHEST", "THORAX")
VIEWS = ("frontal", "all")
#: Manufacturer of every object cxr14 writes (General Equipment): a second sign of our own results.
MANUFACTURER = "cxr14"
_DEVICE_OBSERVER_UID = "121012"  # DCM "Device Observer UID", the SR observer context's UID item


def why_skip(ds: pydicom.Dataset, views: str = "frontal") -> str | None:
    """None when the object is a film to score; else the reason, naming no patient data.

    views: "frontal" scores PA and AP only (a lateral or an empty ViewPosition is skipped); "all" scores any view.
    Checks, in order: cxr14's own result (our device UID or manufacturer), not a radiograph (Modality, SOP
    class), not the chest (BodyPartExamined, when present), the view, more than one frame, no pixel data.
    """
    if views not in VIEWS:
        raise ValueError(f"views must be one of {VIEWS}, not {views!r}")
    own = _own_result(ds)
    if own:
        return f"cxr14's own result ({own})"
    modality = str(ds.get("Modality", "") or "").upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if modality in RESULT_MODALITIES or modality not in RADIOGRAPH_MODALITIES:
        return f"not a radiograph (Modality {modality or 'empty'})"
    if sop_class == DX_FOR_PROCESSING:
        return "a DX image For Processing (raw detector data), not For Presentation"
    if sop_class and sop_class not in (CR_IMAGE, DX_FOR_PRESENTATION):
        return f"not a CR or DX For Presentation image (SOP class {sop_class})"
    part = str(ds.get("BodyPartExamined", "") or "").upper()
    if part and part not in CHEST_PARTS:
        return f"not a chest film (BodyPartExamined {part})"
    view = str(ds.get("ViewPosition", "") or "").upper()
    if views == "frontal" and view not in FRONTAL_VIEWS:
        return f"lateral view (ViewPosition {view})" if view in ("LL", "RL", "LAT") else (
            f"not a frontal view (ViewPosition {view or 'empty'}; --views all scores it)")  # fmt: skip
    frames = _frames(ds)
    if frames > 1:
        return f"multi-frame object ({frames} frames): a chest film is one frame"
    if not ds.get("StudyInstanceUID") or not ds.get("SOPInstanceUID"):
        return "no StudyInstanceUID or SOPInstanceUID: a result could not be filed with it"
    return None


def _frames(ds: pydicom.Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def _own_result(ds: pydicom.Dataset) -> str:
    """How the object shows it was written by cxr14 ("" when it does not)."""
    if is_own_device(ds.get("DeviceUID")):
        return "our device UID"
    for item in ds.get("ContentSequence", []) or []:  # an SR's observer context, at its top level
        concept = (item.get("ConceptNameCodeSequence") or [None])[0]
        if concept is not None and concept.get("CodeValue") == _DEVICE_OBSERVER_UID and is_own_device(item.get("UID")):
            return "our device UID"
    if str(ds.get("Manufacturer", "") or "") == MANUFACTURER:
        return f"Manufacturer {MANUFACTURER}"
    return ""


#: Type 2 attributes of the Patient and General Study modules that every result copies from its film: present in
#: a conforming film, possibly empty. Films from test tools and some gateways leave them out altogether.
COPIED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")  # fmt: skip


def complete_header(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The header with each absent COPIED_TYPE2 attribute added empty (DICOM's "unknown"), so that a film lacking
    one still gets its results, which must carry them (empty is allowed; absent is not)."""
    for keyword in COPIED_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds
