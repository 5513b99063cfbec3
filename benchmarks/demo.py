"""How long does `cxr14 demo` take from nothing, and what mean test AUROC does it reach?

Runs the real command in a fresh folder (phantom generation included), as the README's first command
does after set-up, and prints the wall time, the mean test AUROC with its interval, the per-class table and
the heatmaps' pointing-game hit rate on the phantom boxes against chance. Targets on a 2-core CPU machine: at
most 10 minutes, mean test AUROC at least 0.85, hit rate at least twice chance. Prints figures, asserts nothing.

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
        low, high = metrics["mean_auroc_ci"]
        print(f"mean test AUROC: {metrics['mean_auroc']:.3f} [{low:.3f}, {high:.3f}] over {metrics['n_images']} images "
              f"of {metrics['n_patients']} patients (target >= 0.85)")  # fmt: skip
        boxes = work / "run" / "localisation" / "metrics.json"
        if boxes.is_file():
            loc = json.loads(boxes.read_text())["localisation"]
            ratio = loc["mean_hit_rate"] / loc["mean_chance"]
            print(
                f"heatmaps on {loc['n_boxes']} phantom boxes: pointing-game hit rate {loc['mean_hit_rate']:.3f} "
                f"against chance {loc['mean_chance']:.3f} ({ratio:.1f}x; target >= 2x), IoU {loc['mean_iou']:.3f}"
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
