"""A finding's heatmap over the film as an RGB Secondary Capture, filed in the film's study.

The picture is `using.predict.overlay_image` - the same one `cxr14 predict --cam` saves as PNG - at most 1024
pixels on its long side: a PACS shows it beside the film without moving a full-size RGB copy. A viewer shows it
without cxr14's context, so it carries its own: a caption band burnt in at the top (the finding, its probability,
"cxr14 - not for diagnostic use"), as the colours are (BurnedInAnnotation YES); the series says it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxr14.using.dicom.select import MANUFACTURER
from cxr14.using.dicom.sr import SERIES_NUMBER, equipment
from cxr14.using.dicom.uids import result_uid

if TYPE_CHECKING:
    from pydicom import Dataset

    from cxr14.model.loading import LoadedModel

#: The caption band's height as a share of the picture's height (at least CAPTION_MIN px).
CAPTION_SHARE, CAPTION_MIN = 0.06, 14


def caption(rgb: np.ndarray, text: str) -> np.ndarray:
    """The picture with `text` burnt into a black band over its top rows (white, Pillow's own font, made smaller
    until it fits the width)."""
    from PIL import Image, ImageDraw, ImageFont

    height = max(CAPTION_MIN, round(rgb.shape[0] * CAPTION_SHARE))
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, image.width, height), fill=(0, 0, 0))
    size = max(8, round(height * 0.7))
    font = ImageFont.load_default(size=size)
    while size > 8 and draw.textlength(text, font=font) > image.width - height // 2:  # narrow films: smaller type
        size -= 1
        font = ImageFont.load_default(size=size)
    draw.text((height // 4, height // 2), text, fill=(255, 255, 255), font=font, anchor="lm")
    return np.asarray(image)


#: A frontal chest film as a viewer shows it: the patient's left toward higher columns, feet toward higher rows.
FRONTAL_ORIENTATION = ("L", "F")


def build_sc(source: Dataset, model: LoadedModel, rgb: np.ndarray, label: str, probability: float, rank: int,
             sha256: str) -> Dataset:  # fmt: skip
    """The Secondary Capture of one finding's heatmap (rgb: uint8 [H, W, 3]); rank 1 is the most probable."""
    import highdicom as hd
    from pydicom.dataset import Dataset as Item

    orientation = tuple(str(v) for v in source.get("PatientOrientation", []) or [])
    rgb = caption(rgb, f"{label}  {probability:.2f}  -  cxr14, not for diagnostic use")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=rgb, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT",
        series_instance_uid=result_uid(source.StudyInstanceUID, sha256, "series-sc"),
        series_number=SERIES_NUMBER + 1,
        sop_instance_uid=result_uid(source.SOPInstanceUID, sha256, f"sc-{label}"),
        instance_number=int(source.get("InstanceNumber") or 1) * 100 + rank, manufacturer=MANUFACTURER,
        patient_orientation=orientation if len(orientation) == 2 else FRONTAL_ORIENTATION,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )  # fmt: skip
    equipment(sc, model, sha256)
    # The chest is an unpaired body part: said so, Laterality (Type 2C) is rightly absent.
    sc.BodyPartExamined = str(source.get("BodyPartExamined") or "CHEST")
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = "cxr14 heatmaps - NOT FOR DIAGNOSTIC USE"
    sc.ImageComments = (f"cxr14 heatmap (HiResCAM) of {label}, probability {probability:.3f}: where the model "
                        f"found it. Research use, not for diagnosis.")[:10240]  # fmt: skip
    sc.DerivationDescription = f"heatmap of {label} laid over the film, scaled to {rgb.shape[1]} x {rgb.shape[0]}"
    ref = Item()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    return sc
