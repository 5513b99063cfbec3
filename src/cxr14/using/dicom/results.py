"""DICOM files -> the one inference path -> the result objects of each film (SR, heatmap SC, GSPS).

Shared by `cxr14 dicom predict` (files on disk) and `cxr14 dicom listen` (files a PACS sent). The header is read
first and `select.why_skip` decides; the films to score then go through `using.predict`'s own reader, loader,
inference pass and rows - the same decoding (modality LUT, VOI, MONOCHROME1), resize, calibration and unusual
check as `cxr14 predict` - so a film gets the same probabilities here as there. Nothing that can go wrong with
one file stops the others: it comes back with its reason.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr14.using.dicom.select import complete_header, why_skip

if TYPE_CHECKING:
    import pydicom

    from cxr14.model.loading import LoadedModel

log = logging.getLogger(__name__)
#: The objects a film's results can be: the findings (SR), heatmaps (SC), the top finding's region (GSPS).
OUTPUTS = ("sr", "sc", "gsps")
#: Films per forward pass.
BATCH = 16
#: Heatmap Secondary Captures per film: its most probable findings.
SC_TOP = 3
NO_HEATMAPS = "no heatmap (SC, GSPS): the model is an ONNX graph, with no gradients to follow; use its best_model.pth"


def score_files(model: LoadedModel, paths: list[Path], outputs: frozenset[str], views: str = "frontal"
                ) -> list[tuple[Path, list[pydicom.Dataset], str | None]]:  # fmt: skip
    """Per DICOM file: the result objects to send back (SR, SC, GSPS as asked) or [] with the skip reason.

    outputs: a subset of OUTPUTS. views: "frontal" (PA/AP only) or "all" (`select.why_skip`). The order of the
    answer is the order of `paths`. An ONNX model (no heatmaps) still gets its SR; the SC and GSPS are left out
    and that is logged once.
    """
    from cxr14.using.dicom.uids import model_sha256

    unknown = set(outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}: choose from {OUTPUTS}")
    headers, reasons = _headers(paths, views)
    done: dict[int, list[pydicom.Dataset]] = {}
    todo = sorted(headers)
    if todo:
        sha256 = model_sha256(model)
        if outputs & {"sc", "gsps"} and not model.explainable:
            log.warning("%s", NO_HEATMAPS)
        for i, row in _rows(model, [paths[i] for i in todo], todo, reasons):
            try:
                with warnings.catch_warnings():  # highdicom's warnings quote the film's header: patient data
                    warnings.simplefilter("ignore", UserWarning)
                    done[i] = _objects(model, headers[i], paths[i], row, outputs, sha256)
            except Exception as exc:  # a header highdicom refuses must not stop the other films
                from cxr14.data.films.dicom import one_line

                reasons[i] = f"no result could be built ({type(exc).__name__}: {one_line(exc)})"
    return [(path, done.get(i, []), reasons.get(i)) for i, path in enumerate(paths)]


def _headers(paths: Sequence[Path], views: str) -> tuple[dict[int, pydicom.Dataset], dict[int, str]]:
    """Each file's header (no pixels), or why it is not scored."""
    import pydicom

    from cxr14.data.films.dicom import one_line

    headers: dict[int, pydicom.Dataset] = {}
    reasons: dict[int, str] = {}
    for i, path in enumerate(paths):
        try:
            with warnings.catch_warnings():  # pydicom's complaints about a damaged header quote its values
                warnings.simplefilter("ignore", UserWarning)
                ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # not DICOM, truncated, unreadable: one line, not a traceback
            reasons[i] = f"not a readable DICOM file ({type(exc).__name__}: {one_line(exc)})"
            continue
        why = why_skip(ds, views)  # pixels: the film reader below says what is wrong with them
        if why is None:
            headers[i] = complete_header(ds)
        else:
            reasons[i] = why
    return headers, reasons


def _rows(model: LoadedModel, paths: list[Path], index: list[int], reasons: dict[int, str]
          ) -> list[tuple[int, dict[str, Any]]]:  # fmt: skip
    """The films through `using.predict`'s reader, loader, inference pass and rows: (file index, row)."""
    from cxr14.model.inference import predict
    from cxr14.using.predict import FilmSource, film_loader, rows

    source = FilmSource(paths, model.data_config.image_size)
    pred = predict(model.classifier, film_loader(source, BATCH, 0), progress=False)
    for j, why in pred.bad:
        reasons[index[j]] = why
    if len(pred.index) == 0:  # every film unreadable: no logits to calibrate
        return []
    table = rows(model, [str(paths[j]) for j in pred.index], pred)
    return [(index[int(j)], row) for j, row in zip(pred.index, table, strict=True)]


def _objects(model: LoadedModel, source: pydicom.Dataset, path: Path, row: dict[str, Any], outputs: frozenset[str],
             sha256: str) -> list[pydicom.Dataset]:  # fmt: skip
    """The result objects of one scored film, in the order SR, SCs (most probable first), GSPS."""
    from cxr14.data.films.upload import read_film
    from cxr14.using.dicom.gsps import build_gsps
    from cxr14.using.dicom.sc import build_sc
    from cxr14.using.dicom.sr import build_sr
    from cxr14.using.predict import heatmap, overlay_image, top_findings

    out = [build_sr(source, model, row, sha256)] if "sr" in outputs else []
    if not (outputs & {"sc", "gsps"}) or not model.explainable:
        return out
    film = read_film(path)
    probs = row["probabilities"]
    if "sc" in outputs:
        for rank, label in enumerate(top_findings(model, row, SC_TOP), start=1):
            rgb = overlay_image(model, film, label)
            out.append(build_sc(source, model, np.asarray(rgb, dtype=np.uint8), label, probs[label], rank, sha256))
    if "gsps" in outputs:
        label = top_findings(model, row, 1)[0]
        gsps = build_gsps(source, model, heatmap(model, film, model.labels.index(label)), label, probs[label], sha256)
        out.extend([gsps] if gsps is not None else [])
    return out
