"""NIH's box list, `BBox_List_2017.csv`: its name, header, spellings, and writing it byte for byte.

984 radiologist boxes on 880 test images for 8 findings; one row per (image, finding): image name,
finding, then x, y, w, h (left, top, width, height) in the PNG's pixel space, as floats with up to 15
significant digits. LF line endings and a final newline. The header names the four coordinates as one
bracketed column, so it has three trailing empty names. The file spells Infiltration "Infiltrate".
Reading (with checks and a DataFrame) is `cxr14.judging.localisation.read_boxes`; this module stays light
because phantom render workers import it.
"""

from __future__ import annotations

from collections.abc import Sequence

BBOX_NAME = "BBox_List_2017.csv"
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
#: The 8 findings NIH boxed, in NIH_LABELS order and spelling.
BOXED = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax")
#: NIH_LABELS spelling -> the file's spelling, where they differ.
FILE_SPELLING = {"Infiltration": "Infiltrate"}


def format_boxes(rows: Sequence[tuple[str, str, float, float, float, float]]) -> str:
    """Rows (image, finding as in NIH_LABELS, x, y, w, h) -> the file's text in NIH's exact format.

    Reformatting NIH's own rows this way gives back its file byte for byte (tested).
    """
    lines = [BBOX_HEADER]
    for image, finding, *xywh in rows:
        lines.append(",".join([image, FILE_SPELLING.get(finding, finding), *(f"{v:.15g}" for v in xywh)]))
    return "\n".join(lines) + "\n"
