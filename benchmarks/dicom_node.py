"""What does the DICOM node add to scoring, and does its memory stay flat under a burst?

Writes N phantom DX films (DICOM, --film_size px) and a model (--checkpoint, or --model at --image_size untrained:
speed does not depend on the weights), then times on the same files:

    predict      `cxr14 predict`'s own function (run_predict; its defaults: batch 32, 2 reading workers)
    score_files  the node's scoring step alone (`dicom.results.score_files`, --outputs, in node-sized batches)
    node         `cxr14 dicom listen` in its own process, the N films sent to it as one burst over one
                 association, timed until the last result is stored at a C-STORE SCP in this process

The node's overhead (receiving, spooling, sending) is (node - score_files) per film, shown as a share of
predict's time per film. The node's resident set is sampled while it works: after the 50th result and after the
last. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/dicom_node.py --n 200
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pydicom
from pynetdicom import AE, StoragePresentationContexts, evt

from cxr14.config import PredictConfig
from cxr14.data.phantom import render
from cxr14.data.phantom.writer import pacs_film
from cxr14.labels import NIH_LABELS
from cxr14.model.loading import load_model
from cxr14.using.dicom.results import score_files
from cxr14.using.predict import run_predict

sys.path.insert(0, str(Path(__file__).parent))
from predict_speed import demo_checkpoint

DX = "1.2.840.10008.5.1.4.1.1.1.1"


def write_films(folder: Path, n: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        pixels = render((rng.random(len(NIH_LABELS)) < 0.15).astype(np.uint8), size, rng).astype(np.uint16) * 16
        paths.append(folder / f"film_{i:05d}.dcm")
        pydicom.dcmwrite(paths[-1], pacs_film(pixels, i), enforce_file_format=True)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """A C-STORE SCP that counts what it stores and when, and samples the node's resident set at milestones."""

    def __init__(self, expected: int, milestone: int) -> None:
        self.expected, self.milestone, self.count = expected, milestone, 0
        self.done, self.last = threading.Event(), 0.0
        self.node: psutil.Process | None = None
        self.rss: dict[int, float] = {}
        ae = AE(ae_title="PACS")
        ae.supported_contexts = StoragePresentationContexts
        self.ae = ae
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)])

    def store(self, event: evt.Event) -> int:
        self.count += 1
        if self.node is not None and self.count in (self.milestone, self.expected):
            self.rss[self.count] = self.node.memory_info().rss / 2**20
        if self.count >= self.expected:
            self.last = time.perf_counter()
            self.done.set()
        return 0x0000


def peak_rss(proc: psutil.Process, stop: threading.Event, out: list[float]) -> None:
    while not stop.wait(0.05):
        try:
            out.append(proc.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            return


def time_node(args: argparse.Namespace, ckpt: Path, paths: list[Path], work: Path, per_film: int) -> dict:
    """The node in its own process: the burst sent, the clock stopped at the last result stored."""
    sink = Sink(len(paths) * per_film, min(50, len(paths)) * per_film)
    port = free_port()
    command = [sys.executable, "-m", "cxr14", "dicom", "listen", "--checkpoint", str(ckpt), "--port", str(port),
               "--send", f"PACS@127.0.0.1:{sink.server.server_address[1]}", "--spool", str(work / "spool"),
               "--outputs", args.outputs, "--device", args.device, "--batch_size", str(args.node_batch)]  # fmt: skip
    node = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or node.poll() is not None:
                    raise RuntimeError("the node did not start listening") from None
                time.sleep(0.2)
        proc = psutil.Process(node.pid)
        sink.node, samples, stop = proc, [], threading.Event()
        rss_idle = proc.memory_info().rss / 2**20
        sampler = threading.Thread(target=peak_rss, args=(proc, stop, samples), daemon=True)
        sampler.start()
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(DX)
        t0 = time.perf_counter()
        assoc = ae.associate("127.0.0.1", port, ae_title="CXR14")
        for path in paths:
            assoc.send_c_store(path)
        assoc.release()
        received = time.perf_counter() - t0
        finished = sink.done.wait(600)
        stop.set()
        return {"seconds": sink.last - t0 if finished else float("nan"), "received": received, "rss_idle": rss_idle,
                "rss": sink.rss, "rss_peak": max(samples, default=float("nan")), "stored": sink.count}  # fmt: skip
    finally:
        node.terminate()
        node.wait(60)
        sink.ae.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="films in the burst")
    parser.add_argument("--film_size", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=96, help="model input size (without --checkpoint)")
    parser.add_argument("--model", default="convnext_atto", help="timm model (without --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--outputs", default="sr", help="result objects per film (sr, sc, gsps)")
    parser.add_argument("--node_batch", type=int, default=8, help="the node's --batch_size")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "films").mkdir()
        paths = write_films(work / "films", args.n, args.film_size)
        ckpt = args.checkpoint or demo_checkpoint(work / "model.pth", args.image_size, args.model)
        t0 = time.perf_counter()
        model = load_model(ckpt, args.device)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_predict(PredictConfig(paths=[work / "films"], checkpoint=ckpt, out=work / "rows.json", json=True,
                                  device=args.device, progress=False))  # fmt: skip
        predict = (time.perf_counter() - t0 - load) / args.n
        outputs = frozenset(args.outputs.split(","))
        t0 = time.perf_counter()
        objects = 0
        for i in range(0, args.n, args.node_batch):
            objects += sum(len(o) for _, o, _ in score_files(model, paths[i : i + args.node_batch], outputs))
        scoring = (time.perf_counter() - t0) / args.n
        if objects < args.n:
            raise SystemExit(f"only {objects} result objects for {args.n} films: films skipped; see the log above")
        node = time_node(args, ckpt, paths, work, objects // args.n)
        per_film = node["seconds"] / args.n
        print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; {args.n} DICOM films of "
              f"{args.film_size} px; model {args.checkpoint or args.model} at {model.data_config.image_size} px; "
              f"outputs {args.outputs}; device {args.device}")  # fmt: skip
        print(f"predict:      {1 / predict:6.1f} films/s ({1000 * predict:.1f} ms a film, model load excluded)")
        print(f"score_files:  {1 / scoring:6.1f} films/s ({1000 * scoring:.1f} ms a film: the node's scoring alone)")
        print(f"node:         {1 / per_film:6.1f} films/s end to end ({1000 * per_film:.1f} ms a film; the burst was "
              f"received in {node['received']:.1f} s; {node['stored']} results stored)")  # fmt: skip
        print(f"node overhead (node - score_files): {1000 * (per_film - scoring):.1f} ms a film = "
              f"{100 * (per_film - scoring) / predict:.0f}% of predict's time a film; node / predict: "
              f"{per_film / predict:.2f}")  # fmt: skip
        rss = "; ".join(f"after {k // max(1, objects // args.n)} films {v:.0f} MiB" for k, v in node["rss"].items())
        print(f"node resident set: idle {node['rss_idle']:.0f} MiB; {rss}; peak {node['rss_peak']:.0f} MiB")


if __name__ == "__main__":
    main()
