"""The model's findings on one film as a Comprehensive 3D SR following TID 1500 (Measurement Report).

One measurement group (TID 1501) per finding of the model's label set: the finding's code (`codes`), its
calibrated probability (DCM 122157 "Probability", unit UCUM "1"), Present or Absent at the threshold stored in
the model (a qualitative evaluation), the algorithm (name, version with the model's sha256, the threshold as its
parameter), and the source image. An unusual film - plainly not a chest film, or unlike the training films to the
model's gate - keeps its probabilities, but every evaluation is Indeterminate and the reason is given as text:
the model was not made for such a film and calls nothing on it, as `cxr14 predict` does. The observer is the
device (`uids.device_uid`, one per trained model); the report is preliminary, partial and unverified: a
machine's reading for a person to check, never a final report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxr14.using.dicom import codes
from cxr14.using.dicom.select import MANUFACTURER
from cxr14.using.dicom.uids import device_uid, result_uid

if TYPE_CHECKING:
    from pydicom import Dataset

    from cxr14.model.loading import LoadedModel

#: Series numbers of cxr14's result series (SR, heatmap SC, GSPS), high to sort after the modality's own series.
SERIES_NUMBER = 9901
#: TID 1501's concept for a qualitative evaluation given as text (UMLS C0034375 "Qualitative Evaluations").
_QUALITATIVE = ("C0034375", "UMLS", "Qualitative Evaluations")


def algorithm_version(sha256: str) -> str:
    """cxr14's version and the first 16 hex digits of the model's sha256: which code ran which weights."""
    from cxr14 import __version__

    return f"cxr14 {__version__} model sha256:{sha256[:16]}"


def equipment(ds: Dataset, model: LoadedModel, sha256: str) -> None:
    """General Equipment of every object cxr14 writes: cxr14 as manufacturer, the model, the device UID."""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = str(model.card.get("model", "unknown"))[:64]
    ds.SoftwareVersions = algorithm_version(sha256)[:64]
    ds.DeviceUID = device_uid(sha256)


def build_sr(source: Dataset, model: LoadedModel, row: dict[str, Any], sha256: str) -> Dataset:
    """The SR of one scored film (`source`: its header; `row`: its `using.predict.rows` entry)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm

    device = hd.sr.ObserverContext(
        observer_type=dcm.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(sha256), name="cxr14", manufacturer_name=MANUFACTURER,
            model_name=str(model.card.get("model", "unknown"))[:64]),
    )  # fmt: skip
    image = hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID)
    groups = [_group(model, label, threshold, row, image, sha256, source.SOPInstanceUID)
              for label, threshold in zip(model.labels, model.thresholds, strict=True)]  # fmt: skip
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=dcm.SCT.ChestImaging,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source], content=report[0],
        series_instance_uid=result_uid(source.StudyInstanceUID, sha256, "series-sr"), series_number=SERIES_NUMBER,
        sop_instance_uid=result_uid(source.SOPInstanceUID, sha256, "sr"),
        instance_number=int(source.get("InstanceNumber") or 1),
        manufacturer=MANUFACTURER, is_complete=False, is_final=False, is_verified=False,
    )  # fmt: skip
    equipment(sr, model, sha256)
    sr.SeriesDescription = "cxr14 findings (research use; not for diagnosis)"
    sr.CodingSchemeIdentificationSequence = [codes.coding_scheme_identification()]
    return sr


def _group(model: LoadedModel, label: str, threshold: float | None, row: dict[str, Any], image: Any, sha256: str,
           source_uid: str) -> Any:  # fmt: skip
    """TID 1501 for one finding: probability, Present/Absent (or Indeterminate and why), algorithm, source."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm

    finding = codes.finding_code(label)
    algorithm = hd.sr.AlgorithmIdentification(
        name=f"cxr14 {model.card.get('model', 'classifier')}"[:64], version=algorithm_version(sha256)[:64],
        parameters=[f"threshold={'none' if threshold is None else f'{threshold:.6f}'}"],
    )  # fmt: skip
    unit = hd.sr.CodedConcept("1", "UCUM", "no units")
    # The algorithm is stated once, for the group (TID 4019); repeating it inside the measurement (TID 300 allows
    # it) would add three content items per finding to an SR that highdicom copies and searches whole.
    probability = hd.sr.Measurement(name=dcm.DCM.Probability, value=float(row["probabilities"][label]), unit=unit)
    why_not = row["reason"] if row["unusual"] else None if threshold is not None else "no threshold in the model"
    called = dcm.SCT.Present if label in row["findings"] else dcm.SCT.Absent
    value = dcm.SCT.Indeterminate if why_not else called
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=result_uid(source_uid, sha256, f"track-{label}"),
                                                     identifier=label[:64]),
        finding_type=finding, algorithm_id=algorithm, measurements=[probability],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=finding, value=value)],
        source_images=[image],
    )  # fmt: skip
    if why_not:
        text = hd.sr.TextContentItem(name=hd.sr.CodedConcept(*_QUALITATIVE), value=str(why_not)[:1024],
                                     relationship_type="CONTAINS")  # fmt: skip
        group[0].ContentSequence.append(text)
    return group


def read_probabilities(sr: Dataset) -> dict[str, float]:
    """Each finding's probability as the SR states it, by its tracking identifier (the label's name): what a
    reader of the SR gets back, for the tests and for anyone checking a report against `cxr14 predict`."""
    out: dict[str, float] = {}
    for item in sr.ContentSequence:
        for group in item.get("ContentSequence", []) if item.get("ValueType") == "CONTAINER" else []:
            label, value = None, None
            for part in group.get("ContentSequence", []):
                name = part.ConceptNameCodeSequence[0]
                if part.ValueType == "TEXT" and name.CodeValue == "112039":  # DCM Tracking Identifier
                    label = str(part.TextValue)
                elif part.ValueType == "NUM" and name.CodeValue == "122157":  # DCM Probability
                    value = float(part.MeasuredValueSequence[0].NumericValue)
            if label is not None and value is not None:
                out[label] = value
    return out
