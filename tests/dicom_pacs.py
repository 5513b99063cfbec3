"""A real PACS around `cxr14 dicom listen`, run inside a network namespace of its own (tests/test_dicom_node.py).

    python -m tests.dicom_pacs CHECKPOINT WORKDIR     (as the test runs it: under `unshare --net`)

Brings up loopback, starts Orthanc (its own config, storage and a Lua route that forwards every CR/DX film it
receives to the node, and nothing else), starts the node, sends films with DCMTK's storescu, and reads back
through Orthanc's REST API what landed in each film's study. Then the crash case: the node restarted with an
unreachable destination, films sent, the node killed with SIGKILL while they sit in its spool, started again
with the real destination (by STOW-RS this time). Writes WORKDIR/report.json for the test to judge; every wait
is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
ORTHANC_DICOM, ORTHANC_HTTP, NODE_PORT, NOWHERE = 4242, 8042, 11112, 4299
SR_CLASSES = "1.2.840.10008.5.1.4.1.1.88."
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
#: Orthanc forwards films, never results (ours or anyone's): CR and DX For Presentation only, not from the node.
ROUTE_LUA = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  local films = { ['1.2.840.10008.5.1.4.1.1.1'] = true, ['1.2.840.10008.5.1.4.1.1.1.1'] = true }
  if films[tags['SOPClassUID']] and origin['RemoteAet'] ~= 'CXR14' then
    SendToModality(instanceId, 'cxr14')
  end
end
"""


def wait_for(what: str, condition: Callable[[], Any], seconds: float) -> Any:
    """condition()'s first truthy value, polled; an error naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.2)


def rest(path: str, body: bytes | None = None) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{ORTHANC_HTTP}{path}", data=body, timeout=10) as response:
        data = response.read()
    return json.loads(data) if response.headers.get_content_type() == "application/json" else data


def start_orthanc(work: Path, procs: list[subprocess.Popen]) -> subprocess.Popen:
    root = work / "orthanc"
    (root / "db").mkdir(parents=True)
    (root / "route.lua").write_text(ROUTE_LUA)
    config = {
        "Name": "cxr14-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "DicomAet": "ORTHANC", "DicomPort": ORTHANC_DICOM, "HttpPort": ORTHANC_HTTP, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomModalities": {"cxr14": ["CXR14", "127.0.0.1", NODE_PORT]},
        "LuaScripts": [str(root / "route.lua")], "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "StableAge": 1, "DicomScuTimeout": 60,
    }  # fmt: skip
    (root / "orthanc.json").write_text(json.dumps(config, indent=1))
    log = open(root / "orthanc.log", "wb")  # noqa: SIM115 - open for as long as Orthanc runs
    proc = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    procs.append(proc)
    wait_for("Orthanc's REST API", lambda: rest("/system"), 60)
    return proc


def start_node(checkpoint: Path, work: Path, to: list[str], log_name: str, procs: list[subprocess.Popen],
               batch_size: int = 8) -> subprocess.Popen:  # fmt: skip
    log = open(work / log_name, "wb")  # noqa: SIM115 - open for as long as the node runs
    command = [sys.executable, "-m", "cxr14", "-v", "dicom", "listen", "--checkpoint", str(checkpoint),
               "--aet", "CXR14", "--port", str(NODE_PORT), *to, "--spool", str(work / "spool"),
               "--allow", "ORTHANC", "--outputs", "sr,sc", "--device", "cpu", "--retry_max", "2", "--timeout", "10",
               "--batch_size", str(batch_size)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    procs.append(proc)

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the node exited ({proc.returncode}); see {work / log_name}")
        with socket.create_connection(("127.0.0.1", NODE_PORT), timeout=1):
            return True

    wait_for("the node to listen", listening, 120)
    return proc


def write_films(folder: Path, prefix: str, n: int, seed: int) -> list[Path]:
    """Phantom DX PA films, each in a study of its own."""
    import pydicom

    from cxr14.data.phantom import render
    from cxr14.data.phantom.writer import pacs_film
    from cxr14.labels import NIH_LABELS

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        pixels = render((rng.random(len(NIH_LABELS)) < 0.2).astype(np.uint8), 128, rng).astype(np.uint16) * 16
        path = folder / f"{prefix}{i}.dcm"
        pydicom.dcmwrite(path, pacs_film(pixels, seed * 1000 + i), enforce_file_format=True)
        paths.append(path)
    return paths


def storescu(paths: list[Path]) -> None:
    subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "ORTHANC", "127.0.0.1", str(ORTHANC_DICOM),
                    *map(str, paths)], check=True, timeout=120)  # fmt: skip


def study_results(path: Path) -> dict[str, Any]:
    """What Orthanc holds in the film's study: how many SRs and SCs, and the first SR's probabilities."""
    import io

    import pydicom

    from cxr14.using.dicom.sr import read_probabilities

    uid = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
    found = [m for m in rest("/tools/lookup", str(uid).encode()) if m["Type"] == "Study"]
    out: dict[str, Any] = {"sr": 0, "sc": 0, "probabilities": {}}
    for instance in rest(f"/studies/{found[0]['ID']}/instances") if found else []:
        sop_class = rest(f"/instances/{instance['ID']}/tags?simplify")["SOPClassUID"]
        if sop_class.startswith(SR_CLASSES):
            out["sr"] += 1
            out["probabilities"] = read_probabilities(
                pydicom.dcmread(io.BytesIO(rest(f"/instances/{instance['ID']}/file")))
            )
        out["sc"] += sop_class == SC_CLASS
    return out


def spool_counts(work: Path) -> dict[str, int]:
    from cxr14.using.dicom.spool import Spool

    return Spool(work / "spool").counts() if (work / "spool").exists() else {}


def predict_json(checkpoint: Path, paths: list[Path], out: Path) -> dict[str, dict[str, float]]:
    subprocess.run([sys.executable, "-m", "cxr14", "predict", *map(str, paths), "--checkpoint", str(checkpoint),
                    "--json", "--out", str(out), "--device", "cpu", "--num_workers", "0", "--no-progress"],
                   check=True, timeout=300)  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {Path(r["file"]).name: r["probabilities"] for r in rows}


def first_pass(checkpoint: Path, work: Path, films: list[Path], procs: list[subprocess.Popen]) -> dict[str, Any]:
    """Films through Orthanc to the node and back; each study's results beside predict's probabilities."""
    expected = predict_json(checkpoint, films, work / "predict.jsonl")
    node = start_node(checkpoint, work, ["--send", f"ORTHANC@127.0.0.1:{ORTHANC_DICOM}"], "node1.log", procs)
    storescu(films)
    wait_for("an SR in every study", lambda: all(study_results(f)["sr"] for f in films), 180)
    wait_for("the spool to drain", lambda: not any(spool_counts(work).values()), 60)
    node.send_signal(signal.SIGTERM)
    node.wait(timeout=60)  # a graceful stop: it must end by itself
    return {f.name: {**study_results(f), "predict": expected[f.name]} for f in films}


def crash_pass(checkpoint: Path, work: Path, films: list[Path], procs: list[subprocess.Popen]) -> dict[str, Any]:
    """Films spooled while the destination is down, the node killed -9, restarted: one SR per film."""
    node = start_node(checkpoint, work, ["--send", f"ORTHANC@127.0.0.1:{NOWHERE}"], "node2.log", procs, batch_size=2)
    storescu(films)

    def spooled() -> bool:  # every film received, and some scored: both states a restart must finish
        counts = spool_counts(work)
        return counts["incoming"] + counts["outgoing"] == len(films) and counts["outgoing"] > 0

    wait_for("every film in the spool, some scored", spooled, 120)
    killed_with = spool_counts(work)
    node.send_signal(signal.SIGKILL)
    node.wait(timeout=30)
    # Restarted delivering by DICOMweb this time: STOW-RS to the same PACS, the same objects.
    node = start_node(checkpoint, work, ["--stow", f"http://127.0.0.1:{ORTHANC_HTTP}/dicom-web"], "node3.log", procs)
    wait_for("an SR in every study", lambda: all(study_results(f)["sr"] for f in films), 180)
    wait_for("the spool to drain", lambda: not any(spool_counts(work).values()), 60)
    time.sleep(2)  # anything sent twice would land now
    after = {f.name: study_results(f)["sr"] for f in films}
    spool_after = spool_counts(work)
    node.send_signal(signal.SIGTERM)
    node.wait(timeout=60)
    return {"killed_with": killed_with, "after_restart": after, "spool_after": spool_after}


def tell_logs(work: Path) -> None:
    """On failure: Orthanc's errors and warnings, and the end of each node log, for the test's message."""
    orthanc = (work / "orthanc" / "orthanc.log").read_text(errors="replace").splitlines()
    print("\n".join(line for line in orthanc if line[:1] in "EW")[-3000:], file=sys.stderr)
    for log in sorted(work.glob("node*.log")):
        lines = log.read_text(errors="replace").splitlines()
        errors = "\n".join(line for line in lines if line.startswith(("E ", "Traceback")))
        print(f"== {log.name}: errors\n{errors}\n== its end\n" + "\n".join(lines[-15:]), file=sys.stderr)


def main(checkpoint: Path, work: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    import data_store

    nema = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"
    procs: list[subprocess.Popen] = []  # everything started here, stopped whatever happens
    try:
        start_orthanc(work, procs)
        films = [*write_films(work / "films", "first", 2, seed=1), nema]
        report: dict[str, Any] = {"first": first_pass(checkpoint, work, films, procs)}
        crash = write_films(work / "films", "crash", 4, seed=2)
        report.update(crash_pass(checkpoint, work, crash, procs), films_sent=len(crash))
        (work / "report.json").write_text(json.dumps(report, indent=1))
    except Exception:
        tell_logs(work)
        raise
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
