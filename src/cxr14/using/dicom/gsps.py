"""The top finding's hottest region outlined on the film itself: a Grayscale Softcopy Presentation State.

Unlike the Secondary Capture, this leaves the film's pixels alone: a viewer draws a rectangle and the finding's
name over the original film, and a reader can turn the layer off. The region is the connected part of the
heatmap at or above half its peak that holds the peak, mapped from the model's square input back to the film's
pixels (the model sees the film stretched to a square, so each axis scales on its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxr14.using.dicom.select import MANUFACTURER
from cxr14.using.dicom.sr import SERIES_NUMBER, algorithm_version, equipment
from cxr14.using.dicom.uids import result_uid

if TYPE_CHECKING:
    from pydicom import Dataset

    from cxr14.model.loading import LoadedModel

#: The region is where the heat reaches this fraction of its peak.
HOT = 0.5


def hottest_box(heat: np.ndarray, rows: int, columns: int) -> tuple[float, float, float, float] | None:
    """(left, top, right, bottom) in the film's pixel coordinates of the hottest region, None for a cold map."""
    from scipy import ndimage

    if heat.max() <= 0:
        return None
    regions, _ = ndimage.label(heat >= HOT * heat.max())
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    ys, xs = np.nonzero(regions == regions[peak])
    sy, sx = rows / heat.shape[0], columns / heat.shape[1]
    return float(xs.min() * sx), float(ys.min() * sy), float((xs.max() + 1) * sx), float((ys.max() + 1) * sy)


def build_gsps(source: Dataset, model: LoadedModel, heat: np.ndarray, label: str, probability: float,
               sha256: str) -> Dataset | None:  # fmt: skip
    """The presentation state outlining `label`'s hottest region on `source`; None when the heatmap is empty."""
    import highdicom as hd

    box = hottest_box(heat, int(source.Rows), int(source.Columns))
    if box is None:
        return None
    left, top, right, bottom = box
    outline = np.array([[left, top], [right, top], [right, bottom], [left, bottom], [left, top]], dtype=np.float64)
    layer = hd.pr.GraphicLayer(layer_name="CXR14", order=1, description="cxr14 heatmap region")
    text = hd.pr.TextObject(text_value=f"{label} {probability:.2f} (cxr14, not for diagnosis)"[:64],
                            units="PIXEL", bounding_box=(left, max(0.0, top - 40), right, max(1.0, top)))  # fmt: skip
    annotation = hd.pr.GraphicAnnotation(
        referenced_images=[source], graphic_layer=layer, text_objects=[text],
        graphic_objects=[hd.pr.GraphicObject(graphic_type="POLYLINE", graphic_data=outline, units="PIXEL")],
    )  # fmt: skip
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[source],
        series_instance_uid=result_uid(source.StudyInstanceUID, sha256, "series-gsps"),
        series_number=SERIES_NUMBER + 2, sop_instance_uid=result_uid(source.SOPInstanceUID, sha256, "gsps"),
        instance_number=int(source.get("InstanceNumber") or 1), manufacturer=MANUFACTURER,
        manufacturer_model_name=str(model.card.get("model", "unknown"))[:64],
        software_versions=algorithm_version(sha256)[:64], device_serial_number=sha256[:16],
        content_label="CXR14", content_description=f"cxr14: hottest region of {label}"[:64],
        graphic_annotations=[annotation], graphic_layers=[layer],
    )  # fmt: skip
    equipment(gsps, model, sha256)
    # The chest is an unpaired body part: said so, Laterality (Type 2C) is rightly absent.
    gsps.BodyPartExamined = str(source.get("BodyPartExamined") or "CHEST")
    gsps.SeriesDescription = "cxr14 region of the top finding - NOT FOR DIAGNOSTIC USE"
    return gsps
