"""How many films per second does `cxr14 predict` score, from files on disk to rows?

Writes N phantom films (PNG, at --film_size px as the demo renders them), then runs the real command's function
(`using.predict.run_predict`: list, decode in workers, resize, batch, the one inference pass, calibrate, format)
on them with a checkpoint: --checkpoint, or a demo-sized model (convnext_atto at 96 px, untrained: speed does
not depend on the weights) saved as a cxr14 checkpoint. Reports films/s, end to end and without the model load, and with
--cam the cost of the heatmap overlays. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/predict_speed.py --n 512
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cxr14.config import PredictConfig
from cxr14.data.phantom import render
from cxr14.labels import NIH_LABELS
from cxr14.model import checkpoint
from cxr14.model.create import create_model
from cxr14.model.loading import load_model
from cxr14.using.predict import run_predict


def write_films(folder: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        findings = (rng.random(len(NIH_LABELS)) < 0.15).astype(np.uint8)
        Image.fromarray(render(findings, size, rng), mode="L").save(folder / f"film_{i:05d}.png")


def demo_checkpoint(path: Path, image_size: int, name: str = "convnext_atto") -> Path:
    """An untrained checkpoint of `name` (speed does not depend on the weights)."""
    model, data = create_model(name, False, None, image_size, len(NIH_LABELS))
    checkpoint.atomic_save(checkpoint.make_state(model, name, data, NIH_LABELS, config={}), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=512, help="films")
    parser.add_argument("--film_size", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=96, help="model input size (without --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cam", type=int, default=16, help="films to time --cam on (0 = skip)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "films").mkdir()
        write_films(work / "films", args.n, args.film_size)
        ckpt = args.checkpoint or demo_checkpoint(work / "model.pth", args.image_size)
        t0 = time.perf_counter()
        load_model(ckpt, args.device)
        load = time.perf_counter() - t0
        cfg = PredictConfig(paths=[work / "films"], checkpoint=ckpt, out=work / "rows.csv", batch_size=args.batch_size,
                            num_workers=args.workers, device=args.device, progress=False)  # fmt: skip
        t0 = time.perf_counter()
        run_predict(cfg)
        total = time.perf_counter() - t0
        print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; {args.n} films of {args.film_size} px; "
              f"device {args.device}")  # fmt: skip
        print(f"predict: {args.n / total:.1f} films/s end to end ({total:.1f} s), "
              f"{args.n / (total - load):.1f} films/s without the model load ({load:.1f} s)")  # fmt: skip
        if args.cam:
            (work / "few").mkdir()
            for p in sorted((work / "films").iterdir())[: args.cam]:
                p.rename(work / "few" / p.name)
            cam_cfg = PredictConfig(paths=[work / "few"], checkpoint=ckpt, out=work / "few.csv", cam=work / "cam",
                                    cam_top=3, device=args.device, progress=False)  # fmt: skip
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                run_predict(cam_cfg)
            seconds = time.perf_counter() - t0
            print(f"predict --cam (top 3 findings): {args.cam / seconds:.1f} films/s ({3 * args.cam} overlays)")


if __name__ == "__main__":
    main()
