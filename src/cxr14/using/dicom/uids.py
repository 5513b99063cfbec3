"""Deterministic UIDs for what cxr14 sends back, and the UID of cxr14 as a device.

A result's UID is a function of the source instance, the model (its sha256) and the kind of object, so running
the same model on the same film again - a retry after a network error, a second `cxr14 dicom predict` -
writes objects with the same UIDs: the PACS replaces them instead of filing a second copy. A new model gives
new UIDs (its results are other results).

The device UID names one trained model as the SR's observer. It is a UUID (2.25.<128-bit integer>, PS3.5
B.2) of version 8 ("custom", RFC 9562) whose first 32 bits are cxr14's marker: `is_own_device` recognises the
results of any cxr14 model without knowing which, so the node never scores its own output (no loops).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxr14.model.loading import LoadedModel

#: The first 32 bits of every cxr14 device UUID ("C14" and a version byte).
DEVICE_MARKER = 0xC1400001
_UUID_BITS = 128
_MARKER_SHIFT = _UUID_BITS - 32


def model_sha256(model: LoadedModel) -> str:
    """The sha256 of the model's file(s): what names this trained model in UIDs and the SR.

    Computed once per LoadedModel and kept on its card (the card describes the model). A checkpoint or .onnx is
    hashed as a file; an hf folder file by file in name order; an ensemble spec ("A.pth,B.pth") member by member;
    a model without a file on disk by its card's labels and architecture.
    """
    if "sha256" not in model.card:
        model.card["sha256"] = _sha256_of(str(model.card.get("checkpoint", "")), model.card)
    return str(model.card["sha256"])


def _sha256_of(spec: str, card: dict) -> str:
    h = hashlib.sha256()
    paths = [Path(p) for p in spec.split(",") if p] if spec else []
    if paths and all(p.exists() for p in paths):
        for path in paths:
            for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if file.is_file():
                    h.update(file.name.encode() + b"\0")
                    with file.open("rb") as f:
                        for block in iter(lambda f=f: f.read(1 << 20), b""):
                            h.update(block)
    else:
        h.update(json.dumps({"model": card.get("model"), "labels": card.get("labels")}, sort_keys=True).encode())
    return h.hexdigest()


def _uuid_uid(bits: int) -> str:
    """A 2.25 UID from 128 bits, with RFC 9562's version (8) and variant bits set."""
    bits &= ~(0xF << 76)
    bits |= 0x8 << 76  # version 8
    bits &= ~(0x3 << 62)
    bits |= 0x2 << 62  # variant 10
    return f"2.25.{bits}"


def device_uid(sha256: str) -> str:
    """cxr14's device UID for the model with this sha256: the same model is the same device everywhere."""
    rest = int(hashlib.sha256(b"cxr14 device\0" + sha256.encode()).hexdigest(), 16) >> (256 - _MARKER_SHIFT)
    return _uuid_uid((DEVICE_MARKER << _MARKER_SHIFT) | rest)


def is_own_device(uid: object) -> bool:
    """Whether a UID is a cxr14 model's device UID (any model's)."""
    text = str(uid or "")
    if not text.startswith("2.25.") or not text[5:].isdigit():
        return False
    return int(text[5:]) >> _MARKER_SHIFT == DEVICE_MARKER


def result_uid(source_uid: str, sha256: str, kind: str) -> str:
    """The UID of one result object: the source SOP instance (or study, for a series), the model, the kind
    ("sr", "sc-Effusion", "gsps", "series-sr"...). Deterministic: the same inputs give the same UID."""
    # Not pydicom's generate_uid(prefix=None, entropy_srcs=...): with no prefix it ignores the entropy (uuid4).
    digest = hashlib.sha256("\0".join(("cxr14 result", str(source_uid), sha256, kind)).encode()).hexdigest()
    return _uuid_uid(int(digest[:32], 16))
