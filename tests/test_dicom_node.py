"""`cxr14 dicom listen`: the spool, delivery with retries and dead letters, restarts, and a real PACS end to end.

The fast tests run the node in this process with a stand-in scorer and a pynetdicom PACS whose answers each test
scripts (out of resources, refusals, down), all on 127.0.0.1. The slow test runs the real thing against Orthanc
inside a network namespace of its own (tests/dicom_pacs.py): storescu -> Orthanc -> the node -> Orthanc, the
model's probabilities in the SR equal to `cxr14 predict`'s, then a kill -9 with films in the spool.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cxr14.config.dicom import DicomListenConfig
from cxr14.data.phantom.writer import dicom_dataset
from cxr14.errors import UserError
from cxr14.using.dicom.node import Node, destination
from cxr14.using.dicom.send import Backoff, DimseTarget
from cxr14.using.dicom.spool import Spool, key_for
from tests.conftest import REPO

pynetdicom = pytest.importorskip("pynetdicom", reason="the node needs the dicom extra: pip install 'cxr14[dicom]'")
from pynetdicom import AE, StoragePresentationContexts, evt  # noqa: E402

DX = "1.2.840.10008.5.1.4.1.1.1.1"


def film(view: str = "PA", seed: int = 0) -> pydicom.Dataset:
    """A phantom DX film with the identifiers a PACS needs."""
    ds = dicom_dataset(np.random.default_rng(seed).integers(0, 4096, (32, 32)))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.PatientID, ds.ViewPosition = "PHANTOM", view
    return ds


def fake_score(paths: list[Path]) -> list[tuple[Path, list[pydicom.Dataset], str | None]]:
    """The scorer's contract without a model: one result per frontal film, its UID derived from the film's."""
    out = []
    for path in paths:
        ds = pydicom.dcmread(path)
        if ds.ViewPosition != "PA":
            out.append((path, [], f"view {ds.ViewPosition}"))
            continue
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(
            entropy_srcs=[ds.SOPInstanceUID, "result"]
        )
        ds.Modality = "OT"
        out.append((path, [ds], None))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakePacs:
    """A C-STORE SCP on 127.0.0.1 answering each store with the next scripted status (then success)."""

    def __init__(self, port: int = 0, statuses: tuple[int, ...] = ()) -> None:
        self.statuses, self.stored, self.calls = list(statuses), {}, 0
        ae = AE(ae_title="PACS")
        ae.supported_contexts = StoragePresentationContexts
        self.ae, self.server = ae, ae.start_server(("127.0.0.1", port), block=False,
                                                   evt_handlers=[(evt.EVT_C_STORE, self.store)])  # fmt: skip
        self.port = self.server.server_address[1]

    def store(self, event: evt.Event) -> int:
        self.calls += 1
        status = self.statuses.pop(0) if self.statuses else 0x0000
        if status == 0x0000:
            self.stored[str(event.request.AffectedSOPInstanceUID)] = event.dataset
        return status

    def close(self) -> None:
        self.ae.shutdown()


def config(tmp_path: Path, pacs_port: int, **kw: object) -> DicomListenConfig:
    return DicomListenConfig(checkpoint=tmp_path / "unused.pth", port=0, send=f"PACS@127.0.0.1:{pacs_port}",
                             spool=tmp_path / "spool", retry_max=0.2, timeout=5, **kw)  # fmt: skip


@pytest.fixture
def running() -> Iterator[Callable[[DicomListenConfig], Node]]:
    """Start nodes (with the stand-in scorer) and close them after the test, whatever happens."""
    nodes: list[Node] = []

    def start(cfg: DicomListenConfig) -> Node:
        node = Node(cfg, fake_score, destination(cfg))
        node.port = node.start()[1]
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.close()


def send_films(port: int, films: list[pydicom.Dataset], calling: str = "MODALITY") -> list[int]:
    ae = AE(ae_title=calling)
    ae.add_requested_context(DX)
    assoc = ae.associate("127.0.0.1", port, ae_title="CXR14")
    if not assoc.is_established:
        return []
    statuses = [assoc.send_c_store(ds).Status for ds in films]
    assoc.release()
    return statuses


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_spool_finishes_what_a_crash_interrupted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = spool.receive("1.2.3", b"film one")
    second = spool.receive("1.2.4", b"film two")
    spool.scored(first, [("0-SR.dcm", b"result")])
    assert not first.exists() and spool.counts() == {"incoming": 1, "outgoing": 1, "dead": 0}
    # A crash after the results were written but before the film was deleted; and half-written files.
    (spool.incoming / first.name).write_bytes(b"film one")
    (spool.incoming / ".part-abc").write_bytes(b"half")
    (spool.outgoing / ".part-x").mkdir()
    looking = Spool(tmp_path)  # opening a spool to look at it changes nothing: a running node may be writing
    assert (looking.incoming / ".part-abc").exists() and looking.counts()["incoming"] == 2
    again = Spool(tmp_path)
    again.recover()
    assert sorted(p.name for p in again.incoming.iterdir()) == [second.name]
    assert sorted(p.name for p in again.outgoing.iterdir()) == [first.stem]
    # Scored twice (the results folder already there): the first objects are kept, the film leaves incoming/.
    third = again.receive("1.2.5", b"film three")
    again.scored(third, [("0-SR.dcm", b"new")])
    (again.incoming / third.name).write_bytes(b"film three")
    again.scored(again.incoming / third.name, [("0-SR.dcm", b"other")])
    assert (again.outgoing / third.stem / "0-SR.dcm").read_bytes() == b"new"
    assert key_for("../../etc/passwd").split("-", 1)[1].startswith("x")  # a name from the network is not a path


def test_node_scores_retries_out_of_resources_and_delivers_once(tmp_path: Path, running) -> None:
    pacs = FakePacs(statuses=(0xA700, 0xA701))
    try:
        node = running(config(tmp_path, pacs.port))
        films = [film(seed=1), film("LL", seed=2), film(seed=3)]
        assert send_films(node.port, films) == [0, 0, 0]
        wait_for(lambda: node.counts["sent"] == 2)
        assert node.counts["skipped"] == 1 and node.counts["dead"] == 0
        assert pacs.calls == 4  # two transient answers, then each result once
        expected = {pydicom.uid.generate_uid(entropy_srcs=[f.SOPInstanceUID, "result"]) for f in (films[0], films[2])}
        assert set(pacs.stored) == expected
        assert node.spool.counts() == {"incoming": 0, "outgoing": 0, "dead": 0}
    finally:
        pacs.close()


def test_refused_result_goes_to_dead_letters_with_the_reason(tmp_path: Path, running) -> None:
    pacs = FakePacs(statuses=(0xA900,))  # dataset does not match SOP class: permanent
    try:
        node = running(config(tmp_path, pacs.port))
        assert send_films(node.port, [film(seed=1), film(seed=2)]) == [0, 0]
        wait_for(lambda: node.counts["sent"] + node.counts["dead"] == 2)
        assert node.counts == {"received": 2, "scored": 2, "skipped": 0, "sent": 1, "dead": 1}
        why = list(node.spool.dead.glob("*.why"))
        assert len(why) == 1 and "0xA900" in why[0].read_text()
        assert pacs.calls == 2  # the refused object was not sent again
    finally:
        pacs.close()


def test_results_wait_for_a_pacs_that_is_down_across_a_restart(tmp_path: Path, running) -> None:
    port = free_port()
    cfg = config(tmp_path, port)
    node = running(cfg)
    films = [film(seed=i) for i in range(3)]
    assert send_films(node.port, films) == [0, 0, 0]
    wait_for(lambda: node.spool.counts()["outgoing"] == 3)
    node.close()  # stopped with everything scored and nothing delivered
    pacs = FakePacs(port=port)
    try:
        again = running(cfg)
        wait_for(lambda: len(pacs.stored) == 3)
        wait_for(lambda: again.spool.counts() == {"incoming": 0, "outgoing": 0, "dead": 0})
        assert pacs.calls == 3
    finally:
        pacs.close()


def test_one_node_per_spool(tmp_path: Path, running) -> None:
    cfg = config(tmp_path, free_port())
    running(cfg)
    with pytest.raises(UserError, match="another cxr14 dicom listen is using the spool"):
        Node(cfg, fake_score, destination(cfg)).start()


def test_callers_outside_allow_are_rejected(tmp_path: Path, running) -> None:
    node = running(config(tmp_path, free_port(), allow="MODALITY,PACS"))
    assert send_films(node.port, [film()], calling="STRANGER") == []
    assert send_films(node.port, [film()], calling="MODALITY") == [0]


def test_a_missing_extra_is_named_with_its_install_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxr14.using.dicom import node

    monkeypatch.setattr(node, "STACK", ("pynetdicom", "dicomweb_client_not_here"))
    missing = r"needs dicomweb-client-not-here, which is not installed: pip install 'cxr14\[dicom\]'"
    with pytest.raises(UserError, match=missing):
        node.run_listen(config(tmp_path, free_port()))


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="give one of them"):
        DicomListenConfig(checkpoint=tmp_path / "m.pth")
    with pytest.raises(UserError, match="AET@HOST:PORT"):
        DicomListenConfig(checkpoint=tmp_path / "m.pth", send="127.0.0.1:4242")
    with pytest.raises(UserError, match="--outputs"):
        DicomListenConfig(checkpoint=tmp_path / "m.pth", send="P@h:1", outputs="sr,pdf")
    with pytest.raises(UserError, match="--allow"):
        DicomListenConfig(checkpoint=tmp_path / "m.pth", send="P@h:1", allow="A" * 17)
    assert DimseTarget.parse("ORTHANC@127.0.0.1:4242").port == 4242
    b = Backoff(first=1, cap=5)
    assert [b.next() for _ in range(5)] == [1, 2, 4, 5, 5]


# ---- the real thing: Orthanc, storescu, the node and the model, in a network namespace of the test's own ----


def namespace_prefix() -> list[str] | None:
    """The command that runs a program in a new network namespace (only loopback), or None where not permitted."""
    for prefix in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode == 0:
            return prefix
    return None


def need_pacs() -> list[str]:
    from tests import dicom_pacs

    missing = [p for p in ("Orthanc", "storescu", "unshare") if shutil.which(p) is None]
    if not Path(dicom_pacs.DICOMWEB_PLUGIN).exists():
        missing.append(dicom_pacs.DICOMWEB_PLUGIN)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup installs orthanc, orthanc-dicomweb and dcmtk as root)")
    prefix = namespace_prefix()
    if prefix is None:
        pytest.skip("network namespaces are not permitted here (unshare --net failed), and Orthanc 1.10 cannot be "
                    "kept to loopback otherwise")  # fmt: skip
    return prefix


@pytest.mark.slow
def test_orthanc_routes_films_to_the_node_and_gets_one_result_each(tmp_path: Path, phantom_run) -> None:
    prefix = need_pacs()
    checkpoint = phantom_run[0] / "best_model.pth"
    driver = [*prefix, sys.executable, "-m", "tests.dicom_pacs", str(checkpoint), str(tmp_path)]
    done = subprocess.run(driver, cwd=REPO, capture_output=True, text=True, timeout=600)
    report_file = tmp_path / "report.json"
    assert done.returncode == 0 and report_file.exists(), f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    report = json.loads(report_file.read_text())
    # The first pass: each routed film's SR is in its own study, with predict's probabilities.
    for name, found in report["first"].items():
        assert found["sr"] == 1, (name, found)
        assert found["sc"] >= 1, (name, found)
        assert found["probabilities"].keys() == found["predict"].keys()
        for label, p in found["predict"].items():
            assert found["probabilities"][label] == pytest.approx(p, abs=1e-4), (name, label)
    # Killed with films in the spool, restarted: every film has exactly one SR, none lost, the spool drained.
    assert report["killed_with"]["outgoing"] >= 1, report["killed_with"]  # scored, not sent (maybe some unscored)
    assert report["after_restart"] == {name: 1 for name in report["after_restart"]}
    assert len(report["after_restart"]) == report["films_sent"]
    assert report["spool_after"] == {"incoming": 0, "outgoing": 0, "dead": 0}
