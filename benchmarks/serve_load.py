"""How many films a second does `cxr14 serve` answer on this machine, and how long does each client wait?

Starts the real `cxr14 serve` as a subprocess on 127.0.0.1 (a free port), waits for /api/health, sends a few
warm-up uploads, then N uploads of phantom films (PNG, 256 px) from C client threads at once, and prints
requests/s, p50/p95/max latency, the error count and the server's --workers/--queue. Prints figures, asserts
nothing.

Without --checkpoint it first makes a demo-sized model in a temp folder: `cxr14 demo --n_patients 100
--epochs 1 --no-bbox`, i.e. the demo's convnext_atto at 96 px (the architecture and input size set the speed,
not how long it trained), and uploads the films of that phantom set.

    .venv/bin/python benchmarks/serve_load.py                          # 300 uploads from 8 clients
    .venv/bin/python benchmarks/serve_load.py --checkpoint runs/demo-X/best_model.pth --films demo_data/images
    .venv/bin/python benchmarks/serve_load.py --cam --workers 2        # each answer with a heatmap
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def demo_model(work: Path) -> tuple[Path, Path]:
    """(best_model.pth, images folder) of a quick demo-sized run in `work`."""
    cmd = [sys.executable, "-m", "cxr14", "demo", "--data_dir", str(work / "phantoms"), "--output_dir",
           str(work / "run"), "--n_patients", "100", "--epochs", "1", "--no-bbox", "--no-progress"]  # fmt: skip
    print("making a demo-sized model:", " ".join(cmd[2:]), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cxr14 demo failed:\n{done.stderr[-3000:]}")
    return work / "run" / "best_model.pth", work / "phantoms" / "images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: Path, port: int, workers: int, queue: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cxr14", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
           "--workers", str(workers), "--queue", str(queue), "--device", "cpu"]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"cxr14 serve exited with {server.returncode}:\n{server.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("cxr14 serve did not answer /api/health within 180 s")


def load(url: str, films: list[bytes], n: int, clients: int, query: str) -> tuple[list[float], list[str], float]:
    """n uploads shared among `clients` threads; (latencies in s, errors, wall time in s)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            for i in range(k, n, clients):
                start = time.perf_counter()
                try:
                    r = http.post(f"/api/predict{query}", files={"file": (f"{i}.png", films[i % len(films)])})
                    failed = None if r.status_code == 200 else f"{r.status_code}: {r.text[:100]}"
                except httpx.HTTPError as exc:
                    failed = f"{type(exc).__name__}: {exc}"
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if failed:
                        errors.append(failed)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a best_model.pth (default: make a demo-sized one)")
    parser.add_argument("--films", type=Path, help="folder of PNG films to upload (default: the demo's phantoms)")
    parser.add_argument("--requests", type=int, default=300, help="uploads to time (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="cxr14 serve --workers (default: %(default)s)")
    parser.add_argument("--queue", type=int, default=8, help="cxr14 serve --queue (default: %(default)s)")
    parser.add_argument("--cam", action="store_true", help="ask each answer for a heatmap too (Effusion's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, images = (args.checkpoint, args.films) if args.checkpoint else demo_model(Path(tmp))
        if images is None:
            raise SystemExit("--films DIR is needed with --checkpoint")
        films = [p.read_bytes() for p in sorted(images.glob("*.png"))[:64]]
        port = free_port()
        server = start_server(checkpoint, port, args.workers, args.queue)
        url, query = f"http://127.0.0.1:{port}", "?cam=Effusion" if args.cam else ""
        try:
            load(url, films, 2 * args.clients, args.clients, query)  # warm-up: first calls allocate
            latencies, errors, wall = load(url, films, args.requests, args.clients, query)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    ms = np.array(latencies) * 1000
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}; model: {checkpoint}")
    print(f"server: --workers {args.workers} --queue {args.queue}; {args.clients} clients; "
          f"{'with' if args.cam else 'no'} heatmap")  # fmt: skip
    print(f"{len(ms)} requests in {wall:.1f} s: {len(ms) / wall:.1f} requests/s; latency p50 "
          f"{np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms, max {ms.max():.0f} ms; "
          f"errors: {len(errors)}")  # fmt: skip
    for line in sorted(set(errors))[:5]:
        print("  error:", line)


if __name__ == "__main__":
    main()
