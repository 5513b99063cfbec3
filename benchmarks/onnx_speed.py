"""ONNX Runtime on the CPU against PyTorch on the CPU: the same model, the same uint8 batch, images per second.

PyTorch scores through cxr14's own `model.inference.Classifier` (fp32, eval, no_grad: what `cxr14 predict --device cpu`
runs); ONNX Runtime runs the graph `cxr14 export` writes (normalisation inside, CPU execution provider), with
the same number of threads. Each side gets warm-up batches, then `--repeat` timed batches, taken in turn (so
that both meet the same machine load); the median batch time gives images/s. Without --checkpoint the model is an
untrained --model at --image_size (speed does not depend on the weights); the default is the size of the test
suite's phantom model, convnext_atto at 64 px. Prints figures, asserts nothing.

On a machine whose cores other processes also use, compare at --threads 1: PyTorch's OpenMP kernels split each
operator evenly across their threads and wait for the slowest, so one busy core slows every operator (on the
shared 2-core VM, 2 threads gave PyTorch 30-45 images/s against 440 with one), while ONNX Runtime, whose pool
hands out work in smaller pieces, kept 440-490 images/s.

    PYTHONPATH=src .venv/bin/python benchmarks/onnx_speed.py --threads 1         # convnext_atto, 64 px, batch 32
    PYTHONPATH=src .venv/bin/python benchmarks/onnx_speed.py --model convnext_tiny --image_size 224 --batch 8
    PYTHONPATH=src .venv/bin/python benchmarks/onnx_speed.py --checkpoint runs/x/best_model.pth
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from cxr14.data.pipeline.transforms import DeviceTransform
from cxr14.labels import NIH_LABELS
from cxr14.model import fields
from cxr14.model.create import build, data_config
from cxr14.model.device import resolve_precision
from cxr14.model.inference import Classifier
from cxr14.model.loading import load_model
from cxr14.model.onnx_runtime import INPUT
from cxr14.using.export.onnx_file import PixelsToProbabilities, write_onnx
from cxr14.using.export.verify import phantom_films


def median_seconds(steps: list[Callable[[], object]], warmup: int, repeat: int) -> list[float]:
    """Median seconds of each step, the steps taken in turn, so that both runtimes see the same machine load."""
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeat):
        for step, spent in zip(steps, times, strict=True):
            start = time.perf_counter()
            step()
            spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a best_model.pth (default: an untrained --model)")
    parser.add_argument("--model", default="convnext_atto")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=10, help="timed batches per runtime")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="for both runtimes")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="cuda: PyTorch on the GPU against ONNX Runtime's CUDA provider (fp32 both)")  # fmt: skip
    args = parser.parse_args()
    device = torch.device(args.device)
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            print(f"ONNX Runtime {ort.__version__} has no CUDA provider here ({ort.get_available_providers()}): "
                  "nothing to compare on the GPU")  # fmt: skip
            return
        providers.insert(0, "CUDAExecutionProvider")
    torch.set_num_threads(args.threads)
    if args.checkpoint is not None:
        loaded = load_model(args.checkpoint, "cpu", "fp32")
        model, data, calibration, card = loaded.classifier.model, loaded.data_config, loaded.calibration, loaded.card
    else:
        model = build(args.model, 1, len(NIH_LABELS), image_size=args.image_size).eval()
        data, calibration, card = data_config(model, args.image_size), None, {"model": args.model, "labels": NIH_LABELS}
    pixels = torch.from_numpy(phantom_films(args.batch, data.image_size))
    torch_classifier = Classifier(model.to(device), DeviceTransform(data.mean, data.std, data.in_chans, None),
                                  resolve_precision("fp32", device))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        write_onnx(PixelsToProbabilities(model, data, None), fields.describe(data, calibration, card), path, 18)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        # ORT's idle threads otherwise spin for a while after each run, taking the cores PyTorch's turn needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=providers)
        feed = {INPUT: pixels.numpy()}
        # Both from host pixels to host logits, so a GPU's work is finished inside each timed step.
        steps = [lambda: torch_classifier(pixels).cpu(), lambda: session.run(["logits"], feed)]
        t_torch, t_ort = median_seconds(steps, args.warmup, args.repeat)
        diff = np.abs(session.run(["logits"], feed)[0] - torch_classifier(pixels).cpu().numpy()).max()
    name = card["model"]
    print(f"{name} at {data.image_size} px, batch {args.batch}, {args.threads} thread(s), median of {args.repeat} "
          f"batches after {args.warmup} warm-up")  # fmt: skip
    print(f"  PyTorch {torch.__version__} (fp32, model.inference.Classifier, {device.type}): "
          f"{args.batch / t_torch:9.1f} images/s")  # fmt: skip
    print(f"  ONNX Runtime {ort.__version__} ({providers[0]}): {args.batch / t_ort:9.1f} images/s")
    print(f"  ONNX Runtime / PyTorch: {t_torch / t_ort:.2f}x; largest |logit difference| {diff:.1e}")


if __name__ == "__main__":
    main()
