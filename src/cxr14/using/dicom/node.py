"""`cxr14 dicom listen`: a DICOM node that a PACS routes chest films to, and that stores the results back.

Three threads around the spool (`spool.py`), so that no stage waits for another:

    receiving (pynetdicom's, one per association)   C-STORE -> SPOOL/incoming, durably, then "success"
    scoring                                           incoming -> the one inference path -> SPOOL/outgoing
    sending                                           outgoing -> the PACS (C-STORE or STOW-RS), retried

A film is acknowledged only once it is on the disk, and leaves the spool only once its results are delivered;
results carry UIDs derived from the film and the model, so what a crash makes the node do twice the PACS stores
once. A burst costs disk, not memory: each stage holds one batch, and the receivers at most one film per
association. Logs name films by SOP Instance UID only: no patient data leaves the PACS through them.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr14.errors import UserError, require_extra
from cxr14.files import exclusive
from cxr14.using.dicom.send import Backoff, Destination, DimseTarget, Refused, StowTarget, Transient
from cxr14.using.dicom.spool import LOCK, Spool

if TYPE_CHECKING:
    import pydicom

    from cxr14.config.dicom import DicomListenConfig

log = logging.getLogger(__name__)
#: Films in, per film: the result objects to store, or none and the reason it was skipped (`results.score_files`).
Scorer = Callable[[list[Path]], list[tuple[Path, list["pydicom.Dataset"], "str | None"]]]
OUT_OF_RESOURCES = 0xA700  # C-STORE status a sending PACS retries later (PS3.4 B.2.3)
#: Largest PDU this node accepts: a film arrives in a few PDUs instead of pynetdicom's default 16 KiB slices, each
#: of which costs Python time.
MAX_PDU = 1 << 20
#: What the node needs beyond cxr14's core, by import name (the dicom extra).
STACK = ("highdicom", "pynetdicom", "dicomweb_client")


def destination(cfg: DicomListenConfig) -> Destination:
    """Where results go: --send AET@HOST:PORT (C-STORE) or --stow URL (STOW-RS)."""
    if cfg.stow:
        return StowTarget(cfg.stow, timeout=cfg.timeout)
    return DimseTarget.parse(cfg.send, calling_aet=cfg.aet, timeout=cfg.timeout)


class Node:
    """The listening node: `start()` binds and starts the threads, `close()` stops them; the spool persists."""

    def __init__(self, cfg: DicomListenConfig, score: Scorer, target: Destination) -> None:
        self.cfg, self.score, self.target = cfg, score, target
        self.spool = Spool(cfg.spool)
        self.stopping = threading.Event()
        self.films_waiting, self.results_waiting = threading.Event(), threading.Event()
        self.counts = {"received": 0, "scored": 0, "skipped": 0, "sent": 0, "dead": 0}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._ae: Any = None
        self._held = contextlib.ExitStack()

    def start(self) -> tuple[str, int]:
        """Listen on cfg.host:cfg.port (a UserError when that is impossible); the (host, port) bound."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.cfg.aet)
        for cx in StoragePresentationContexts:  # any storage class: whether to score it is select.why_skip's call
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)  # stored as sent, never transcoded
        ae.add_supported_context(Verification)
        ae.require_called_aet = True
        ae.require_calling_aet = self.cfg.allowed
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.cfg.timeout
        ae.maximum_pdu_size = MAX_PDU
        self._held.enter_context(exclusive(self.spool.root / LOCK, f"another cxr14 dicom listen is using the spool "
                                           f"{self.spool.root}; give each node its own --spool."))  # fmt: skip
        self.spool.recover()
        try:
            server = ae.start_server((self.cfg.host, self.cfg.port), block=False,
                                     evt_handlers=[(evt.EVT_C_STORE, self.receive)])  # fmt: skip
        except OSError as exc:
            self._held.close()
            raise UserError(f"cannot listen on {self.cfg.host}:{self.cfg.port} ({exc.strerror}): another program "
                            "may be using the port; choose another with --port.") from exc  # fmt: skip
        self._ae = ae
        for name, loop in (("scoring", self._score_loop), ("sending", self._send_loop)):
            thread = threading.Thread(target=loop, name=f"cxr14-dicom-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.films_waiting.set()  # what a previous run left in the spool is taken up at once
        self.results_waiting.set()
        return server.server_address[:2]

    def close(self, timeout: float = 30.0) -> None:
        """Stop listening (open associations are aborted: their senders retry), then the threads, between films."""
        if self._ae is not None:
            self._ae.shutdown()
        self.stopping.set()
        self.films_waiting.set()
        self.results_waiting.set()
        for thread in self._threads:
            thread.join(timeout)
        self._held.close()

    def receive(self, event: Any) -> int:
        """C-STORE: the film on the disk first, then success; if it cannot be kept, a status the sender retries."""
        if self.stopping.is_set():
            return OUT_OF_RESOURCES
        uid = str(event.request.AffectedSOPInstanceUID)
        try:
            self.spool.receive(uid, event.encoded_dataset())
        except OSError as exc:
            log.error("cannot spool %s (%s); answered 'out of resources' so that the sender keeps it", uid,
                      exc.strerror)  # fmt: skip
            return OUT_OF_RESOURCES
        self._count("received")
        log.debug("received %s", uid)
        self.films_waiting.set()
        return 0x0000

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def _score_loop(self) -> None:
        while not self.stopping.is_set():
            self.films_waiting.clear()  # before looking: a film arriving after the look sets it again
            films = self.spool.films(self.cfg.batch_size)
            if not films:
                self.films_waiting.wait(1.0)
                continue
            for film, objects, reason in self._score(films):
                self._file(film, objects, reason)
            self.results_waiting.set()

    def _score(self, films: list[Path]) -> list[tuple[Path, list[Any], str | None]]:
        """The batch through the scorer; when it fails, each film alone, so one bad film fails alone."""
        try:
            return self.score(films)
        except Exception as exc:
            if len(films) == 1:
                log.error("cannot score %s: %s", uid_of(films[0]), exc)
                self.spool.bury(films[0], f"scoring failed: {type(exc).__name__}: {exc}")
                self._count("dead")
                return []
        return [outcome for film in films for outcome in self._score([film])]

    def _file(self, film: Path, objects: list[Any], reason: str | None) -> None:
        """One film's outcome into the spool: its results to send, or skipped (logged by UID)."""
        if reason is not None:
            log.info("skipped %s: %s", uid_of(film), reason)
            self.spool.discard(film)
            self._count("skipped")
            return
        self.spool.scored(film, [(f"{i}-{ds.Modality}.dcm", encode(ds)) for i, ds in enumerate(objects)])
        self._count("scored")

    def _send_loop(self) -> None:
        backoff = Backoff(first=min(1.0, self.cfg.retry_max), cap=self.cfg.retry_max)
        while not self.stopping.is_set():
            self.results_waiting.clear()
            folders = self.spool.results(self.cfg.batch_size)
            if not folders:
                self.results_waiting.wait(1.0)
                continue
            try:
                self._deliver(folders)
                backoff.reset()
            except Transient as exc:
                delay = backoff.next()
                log.warning("%s; %d films' results wait in the spool; next try in %.0f s", exc,
                            self.spool.counts()["outgoing"], delay)  # fmt: skip
                self.stopping.wait(delay)

    def _deliver(self, folders: list[Path]) -> None:
        """Send the folders' objects over one connection; each is deleted once stored, buried once refused."""
        paths = [p for folder in folders for p in sorted(folder.glob("*.dcm"))]
        with self.target.session(paths) as session:
            for path in paths:
                if self.stopping.is_set():
                    return
                try:
                    session.store(path)
                except Refused as exc:
                    log.error("the PACS refused a result of %s: %s (kept in %s)", uid_of(path.parent), exc,
                              self.spool.dead)  # fmt: skip
                    self.spool.bury(path, f"refused: {exc}")
                    self._count("dead")
                    continue
                self.spool.delivered(path)
                self._count("sent")


def uid_of(entry: Path) -> str:
    """The SOP Instance UID a spool entry is named after (T-UID.dcm or T-UID/)."""
    return entry.name.removesuffix(".dcm").partition("-")[2]


def encode(ds: pydicom.Dataset) -> bytes:
    """A result object as a DICOM file (preamble and file meta), as it is stored and sent."""
    import pydicom

    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def model_scorer(cfg: DicomListenConfig) -> Scorer:
    """The checkpoint through the one loader, scored by the one path that `cxr14 dicom predict` uses."""
    from cxr14.model.loading import load_model
    from cxr14.using.dicom.results import score_files

    model = load_model(cfg.checkpoint, cfg.device)
    return functools.partial(score_files, model, outputs=cfg.output_set, views=cfg.views)


def run_listen(cfg: DicomListenConfig) -> None:
    """Serve until SIGINT or SIGTERM; whatever is still in the spool then is taken up by the next start."""
    require_extra("dicom listen", "dicom", STACK)
    node = Node(cfg, model_scorer(cfg), destination(cfg))
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        host, port = node.start()
        waiting = node.spool.counts()
        log.info("cxr14 dicom listen: %s on %s:%d, results to %s; spool %s (%d films to score, %d to send, %d dead)",
                 cfg.aet, host, port, cfg.stow or cfg.send, cfg.spool, waiting["incoming"], waiting["outgoing"],
                 waiting["dead"])  # fmt: skip
        while not stop.wait(0.5):
            pass
        log.info("stopping: finishing the film in hand; the spool keeps the rest")
        node.close()
    finally:
        for s, handler in previous.items():
            with contextlib.suppress(ValueError):
                signal.signal(s, handler)
    log.info("cxr14 dicom listen stopped: %s", ", ".join(f"{v} {k}" for k, v in node.counts.items()))
