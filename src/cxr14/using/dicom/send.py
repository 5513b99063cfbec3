"""Delivering result objects to the PACS: DICOM C-STORE (pynetdicom) or DICOMweb STOW-RS (dicomweb-client).

Each failure is sorted into one of two kinds, because they call for opposite actions. `Transient`: the PACS
could not be reached, rejected or dropped the association, or said it is out of resources - nothing is wrong with
the object, so it is kept and sent again after a growing pause (`Backoff`). `Refused`: the PACS answered that it
will never store this object (an unknown SOP class, a dataset it cannot read, HTTP 4xx) - sending it again would
only block the ones behind it, so it goes to the spool's dead/ folder with the PACS's answer. A rejected
association counts as transient even when the PACS calls it permanent: it says nothing about the object, and once
the PACS's configuration names this node the spool drains by itself.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

#: C-STORE statuses worth trying again (PS3.4 B.2.3, PS3.7 C): A7xx out of resources, 0213 resource limitation.
TRANSIENT_STATUSES = range(0xA700, 0xA800)
RESOURCE_LIMITATION = 0x0213
#: Warnings (coercion, elements discarded, not matching the SOP class): the object is stored.
WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)
#: HTTP statuses worth trying again: timeout, too many requests, and the server-side failures.
TRANSIENT_HTTP = (408, 425, 429, 500, 502, 503, 504)


class Transient(Exception):
    """The destination cannot take objects now; keep them and try again later."""


class Refused(Exception):
    """The destination will never store this object; its answer is the message."""


class Session(Protocol):
    def store(self, path: Path) -> None:
        """Deliver one DICOM file; raise Transient or Refused when it was not stored."""


class Destination(Protocol):
    def session(self, paths: list[Path]) -> contextlib.AbstractContextManager[Session]:
        """A connection able to store `paths` (one association, or one HTTP session, for a whole batch)."""


@dataclass(frozen=True)
class DimseTarget:
    """A C-STORE SCP: "AET@HOST:PORT", reached as `calling_aet`."""

    aet: str
    host: str
    port: int
    calling_aet: str = "CXR14"
    timeout: float = 30.0

    @classmethod
    def parse(cls, spec: str, calling_aet: str = "CXR14", timeout: float = 30.0) -> DimseTarget:
        """DimseTarget from "AET@HOST:PORT" (`config.dicom.parse_peer`: a UserError saying what is wrong)."""
        from cxr14.config.dicom import parse_peer

        return cls(*parse_peer(spec), calling_aet, timeout)

    @contextlib.contextmanager
    def session(self, paths: list[Path]) -> Iterator[DimseSession]:
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.maximum_pdu_size = 1 << 20  # what we accept; results go out in the PACS's own largest PDUs
        files = contexts(paths)
        for sop_class, syntaxes in proposals(files):
            ae.add_requested_context(sop_class, syntaxes)
        try:
            assoc = ae.associate(self.host, self.port, ae_title=self.aet)
        except (OSError, RuntimeError) as exc:
            raise Transient(f"cannot reach {self.aet}@{self.host}:{self.port}: {exc}") from exc
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not established"
            raise Transient(f"{self.aet}@{self.host}:{self.port}: association {why}")
        try:
            yield DimseSession(assoc, files)
        finally:
            if assoc.is_established:
                assoc.release()


def contexts(paths: list[Path]) -> dict[Path, tuple[str, str]]:
    """Each file's (SOP class, transfer syntax), from its file meta alone."""
    from pydicom.filereader import read_file_meta_info

    found = {}
    for path in paths:
        meta = read_file_meta_info(path)
        found[path] = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
    return found


def proposals(files: dict[Path, tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Presentation contexts to propose: per SOP class, one with each of the files' own transfer syntaxes (so the
    PACS can take them as they are), and one with the two uncompressed syntaxes as the fallback."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    fallback = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    own = sorted(set(files.values()))
    return [(c, [t]) for c, t in own] + [(c, fallback) for c in sorted({c for c, _ in own})]


class DimseSession:
    """C-STOREs over one established association.

    A file whose own transfer syntax the PACS accepted is sent as it lies on the disk, in PDU-sized chunks
    (pynetdicom's STORE_SEND_CHUNKED_DATASET): decoding an SR of a hundred content items and encoding it again,
    only to send the same bytes, cost more than building it. Otherwise pynetdicom decodes it and re-encodes it in
    a syntax the PACS took.
    """

    def __init__(self, assoc: object, files: dict[Path, tuple[str, str]]) -> None:
        self.assoc, self.files = assoc, files
        self.as_is = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}

    def store(self, path: Path) -> None:
        from pynetdicom import _config

        _config.STORE_SEND_CHUNKED_DATASET = self.files.get(path) in self.as_is
        try:
            status = self.assoc.send_c_store(path)
        except (OSError, RuntimeError) as exc:
            raise Transient(f"association lost: {exc}") from exc
        except ValueError as exc:  # no accepted presentation context: the PACS does not take this kind of object
            raise Refused(f"not accepted by the PACS: {exc}") from exc
        code = getattr(status, "Status", None)
        if code is None:
            raise Transient("no answer to C-STORE (timeout or association aborted)")
        if code == 0x0000 or code in WARNINGS:
            return
        comment = getattr(status, "ErrorComment", "")
        text = f"C-STORE status 0x{code:04X}{': ' + str(comment) if comment else ''}"
        if code in TRANSIENT_STATUSES or code == RESOURCE_LIMITATION:
            raise Transient(text)
        raise Refused(text)


@dataclass(frozen=True)
class StowTarget:
    """A DICOMweb server: STOW-RS to URL/studies (e.g. http://127.0.0.1:8042/dicom-web)."""

    url: str
    timeout: float = 30.0

    @contextlib.contextmanager
    def session(self, paths: list[Path]) -> Iterator[StowSession]:
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(url=self.url)
        client.set_http_retry_params(retry=False)  # the node retries itself, with its own backoff and spool
        yield StowSession(client)


class StowSession:
    """STOW-RS, one object per request: a refusal names one object, not a batch."""

    def __init__(self, client: object) -> None:
        self.client = client

    def store(self, path: Path) -> None:
        import pydicom
        import requests

        ds = pydicom.dcmread(path)
        try:
            answer = self.client.store_instances([ds])
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in TRANSIENT_HTTP:
                raise Transient(f"HTTP {code} from {self.client.base_url}") from exc
            raise Refused(f"HTTP {code}: {exc.response.text[:200] if exc.response is not None else exc}") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Transient(f"cannot reach {self.client.base_url}: {exc}") from exc
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "unknown")
            if isinstance(reason, int) and (reason in TRANSIENT_STATUSES or reason == RESOURCE_LIMITATION):
                raise Transient(f"STOW-RS failure reason 0x{reason:04X}")
            raise Refused(f"STOW-RS failure reason {reason if not isinstance(reason, int) else f'0x{reason:04X}'}")


class Backoff:
    """Pauses after consecutive transient failures: first, 2*first, 4*first ... at most `cap` seconds."""

    def __init__(self, first: float = 1.0, cap: float = 60.0) -> None:
        self.first, self.cap, self.failures = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
