"""report.html: one self-contained page that explains an evaluation, built from its folder alone.

`write_report(folder)` reads what `evaluate.write_outputs` wrote there (and the training run's metrics.csv),
draws the figures with matplotlib and writes report.html atomically beside them. Images are inlined, nothing
is fetched from the network, and the page reads on a phone and with a screen reader.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from cxr14.files import write_text
from cxr14.judging.report.page import document
from cxr14.judging.report.sections import header, sections
from cxr14.judging.report.sources import ReportInputs, load_inputs

if TYPE_CHECKING:
    from cxr14.config import ReportConfig

log = logging.getLogger(__name__)
REPORT_FILE = "report.html"


def render(inputs: ReportInputs) -> str:
    """The page's HTML for loaded inputs."""
    m = inputs.metrics
    title = f"cxr14 report: {(m.get('model') or {}).get('model', 'model')} on the {m.get('split', '?')} split"
    return document(title, header(inputs), sections(inputs))


def write_report(folder: Path, history: Path | None = None) -> Path:
    """Build `folder`/report.html from the evaluation in `folder`; `history` is the training run's metrics.csv
    (default: the folder's own, else the one beside the checkpoint). Returns the report's path."""
    folder = Path(folder)
    inputs = load_inputs(folder, history)
    for part, what in ((inputs.predictions, "curves"), (inputs.history, "training curves")):
        if part.value is None:
            log.info("report: no %s (%s)", what, part.missing)
    path = folder / REPORT_FILE
    write_text(path, render(inputs))
    log.info("report written to %s", path)
    return path


def rebuild(cfg: ReportConfig) -> Path:
    """`cxr14 report FOLDER [--history CSV]`."""
    return write_report(cfg.folder, cfg.history)  # it logs where


__all__ = ["REPORT_FILE", "rebuild", "render", "write_report"]
