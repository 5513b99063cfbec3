"""How long does `cxr14 demo` take from nothing, and what mean test AUROC does it reach?

Runs the real command in a fresh folder (phantom generation included), as the README's first command
does after set-up, and prints the wall time, the mean test AUROC and the per-class table. Targets on a
2-core CPU machine: at most 10 minutes, mean test AUROC at least 0.85. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/demo.py            # add demo options after --, e.g. -- --epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temp folder)")
    parser.add_argument("demo_args", nargs="*", help="extra `cxr14 demo` options (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
        cmd = [sys.executable, "-m", "cxr14", "demo", "--data_dir", str(work / "phantoms"),
               "--output_dir", str(work / "run"), "--no-progress", *args.demo_args]  # fmt: skip
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        minutes = (time.perf_counter() - start) / 60
        if result.returncode != 0:
            print(result.stderr[-3000:])
            raise SystemExit(f"cxr14 demo failed with exit status {result.returncode}")
        metrics = json.loads((work / "run" / "metrics.json").read_text())
        print(result.stdout)
        print(f"command: {' '.join(cmd[1:])}")
        print(f"wall time: {minutes:.1f} min (target <= 10)")
        print(f"mean test AUROC: {metrics['mean_auroc']:.3f} over {metrics['n_images']} images (target >= 0.85)")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
