"""`cxr14 dicom predict`: DICOM files in, each frontal chest film's result objects written as .dcm files.

What a PACS would get from `cxr14 dicom listen`, written to a folder instead: OUT/<source SOP Instance UID>/
sr.dcm, sc-1.dcm (the most probable finding's heatmap), sc-2.dcm ..., gsps.dcm. The UIDs inside are
deterministic (`uids`), so running it again rewrites the same objects. One line per file on standard output:
what was written, or why it was skipped. Lines name the SOP Instance UID, never the patient; a file that
cannot be read as DICOM is named by the path it was given as.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from cxr14.config import DicomPredictConfig
from cxr14.data.films.upload import list_films
from cxr14.errors import UserError, require_extra
from cxr14.files import atomic_path
from cxr14.using.dicom.results import score_files

__all__ = ["run_dicom_predict", "write_results"]

log = logging.getLogger(__name__)
#: Files in a folder that are pictures, not DICOM: `list_films` lists them for `cxr14 predict`, not here.
_PICTURES = (".png", ".jpg", ".jpeg")


def dicom_files(paths: list[Path]) -> list[Path]:
    """Files as given; in folders, the DICOM files (.dcm, .dicom, or any file with the DICOM marker)."""
    found = list_films(paths)
    given = {Path(p) for p in paths}
    return [p for p in found if p in given or p.suffix.lower() not in _PICTURES]


def object_name(ds, n_sc: int) -> str:
    """The file name of one result object: sr.dcm, sc-N.dcm (N: rank of its finding), gsps.dcm."""
    return {"SR": "sr.dcm", "PR": "gsps.dcm"}.get(str(ds.Modality), f"sc-{n_sc}.dcm")


def write_results(objects: list, folder: Path) -> list[Path]:
    """Write one film's result objects into `folder` (each atomically: a reader never sees half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    written, n_sc = [], 0
    for ds in objects:
        n_sc += ds.Modality not in ("SR", "PR")
        target = folder / object_name(ds, n_sc)
        with atomic_path(target) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append(target)
    return written


def run_dicom_predict(cfg: DicomPredictConfig) -> list[tuple[Path, list[Path], str | None]]:
    """Score every DICOM film under cfg.paths and write its results into cfg.out: (file, written, skip reason)."""
    from cxr14.model.loading import load_model

    require_extra("dicom predict", "dicom", ("highdicom",))
    paths = dicom_files(cfg.paths)
    if not paths:
        raise UserError(f"No DICOM files under {', '.join(map(str, cfg.paths))}.")
    model = load_model(cfg.checkpoint, cfg.device)
    done = []
    for path, objects, reason in score_files(model, paths, cfg.output_set, cfg.views):
        name = _source_uid(path)
        if reason is not None or not objects:
            why = reason or "nothing asked for could be made (see the warning above)"
            sys.stdout.write(f"{name}: skipped: {why}\n")
            done.append((path, [], why))
            continue
        written = write_results(objects, cfg.out / name)
        sys.stdout.write(f"{name}: wrote {', '.join(p.name for p in written)}\n")
        done.append((path, written, None))
    n_written = sum(1 for _, w, _ in done if w)
    log.info("%d film(s) scored, results in %s; %d file(s) skipped (reasons above)", n_written, cfg.out,
             len(done) - n_written)  # fmt: skip
    return done


def _source_uid(path: Path) -> str:
    """The source film's SOP Instance UID (what names its results and its line), or the path it came as."""
    import pydicom

    try:
        with warnings.catch_warnings():  # pydicom's complaints about a damaged header quote its values
            warnings.simplefilter("ignore", UserWarning)
            return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    except Exception:
        return str(path)
