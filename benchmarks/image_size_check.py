"""How long does `check_image_size` take before training starts, for each model the documentation names?

It builds the model on the meta device and runs one batch through it there (shapes only), so the cost
grows with the number of layers, not with the parameters or the image size. Target: well under a second
for every model. Prints the median CPU and wall seconds of `--repeat` calls per model and size (a size the
model refuses is answered before the forward pass, so it is cheaper). Prints figures, asserts nothing.

    .venv/bin/python benchmarks/image_size_check.py            # --sizes 384 100 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from cxr14.errors import UserError
from cxr14.model.create import check_image_size

MODELS = (
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
    "swin_tiny_patch4_window7_224",
    "vit_base_patch16_224",
    "efficientnet_b0",
)


def timed(name: str, size: int) -> tuple[float, float, str]:
    """(cpu s, wall s, verdict) of one check."""
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        check_image_size(name, size)
        verdict = "accepted"
    except UserError as exc:
        verdict = "refused: " + str(exc).rsplit("so it takes ", 1)[-1]
    return time.process_time() - cpu, time.perf_counter() - wall, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[384, 100])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    timed(MODELS[0], args.sizes[0])  # imports and first-call set-up are not part of a check
    print(f"{'model':32s} {'px':>4s} {'cpu s':>6s} {'wall s':>6s}  verdict")
    for name in MODELS:
        for size in args.sizes:
            runs = [timed(name, size) for _ in range(args.repeat)]
            cpu, wall = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            print(f"{name:32s} {size:4d} {cpu:6.2f} {wall:6.2f}  {runs[0][2]}")


if __name__ == "__main__":
    main()
