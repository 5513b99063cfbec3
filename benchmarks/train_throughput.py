"""Training throughput and model FLOP utilisation, through the trainer's own path, for one or more variants.

Each variant is a precision plus optional channels_last and torch.compile, e.g. `fp32`, `bf16+cl`,
`bf16+cl+compile`. All variants run in one process on the same data (phantom films decoded once into the
`cxr14 prepare` cache, read as the trainer reads it), so their ratios are measured side by side.

Per variant: `training.conductor.setup` builds the real run (model, loader from the cache, AdamW, loss,
device transform), `training.step.train_one_epoch` takes --warmup optimizer steps (compilation, cuDNN
autotuning, allocator warm-up), then --steps timed ones; images/s is timed steps x batch / seconds, with the
device synchronised at both ends. FLOPs per image are 3 x the forward FLOPs counted by
torch.utils.flop_counter (not guessed), and MFU = images/s x FLOPs per image / the device's peak (a table of
dense bf16 / TF32 peaks for common GPUs, or --peak_tflops). Also: the first step's seconds (torch.compile's
compilation lands there), the peak GPU memory, and the loader's share: the seconds the loader alone takes
for the timed batches (cache gather and the copy to the device) over the timed steps' seconds.
Prints figures, asserts nothing.

    .venv/bin/python benchmarks/train_throughput.py --model convnext_atto --image_size 96 --batch_size 32 \
        --variants fp32,fp32+cl --steps 10
    python benchmarks/train_throughput.py --model convnext_base --image_size 384 --batch_size 64 \
        --variants fp32,bf16+cl,bf16+cl+compile          # on a GPU
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cxr14.config import PrepareConfig, TrainConfig
from cxr14.data import phantom
from cxr14.data.pipeline.loaders import prepare_cache
from cxr14.model.device import unwrap
from cxr14.training import distributed
from cxr14.training.conductor import setup
from cxr14.training.step import EpochProgress, train_one_epoch

#: Dense peak FLOP/s (no sparsity) by GPU name fragment: (bf16/fp16 tensor cores, TF32 tensor cores).
PEAKS = {
    "H200": (989e12, 494e12),
    "H100 SXM": (989e12, 494e12),
    "H100 80GB HBM3": (989e12, 494e12),
    "H100 PCIe": (756e12, 378e12),
    "A100": (312e12, 156e12),
    "L40S": (362e12, 183e12),
}


def peak_flops(device: torch.device, precision: str, override: float | None) -> float | None:
    """The device's peak for this precision, from --peak_tflops or the table; None when unknown (CPUs)."""
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, (low, tf32) in PEAKS.items():
        if fragment in name:
            return tf32 if precision == "fp32" else low
    return None


def flops_per_image(model: torch.nn.Module, image_size: int, in_chans: int, device: torch.device) -> float:
    """Training FLOPs of one image: 3 x the forward FLOPs counted by PyTorch's FLOP counter on the real model.

    Backward costs twice the forward (gradients for activations and for weights), the usual MFU convention.
    The counter's own backward count is not used: it prices a grouped (depthwise) convolution's backward as if
    it were dense, 66 times the forward for a 64-group 7x7 conv, which would put ConvNeXt's MFU far above 100%.
    """
    x = torch.randn(2, in_chans, image_size, image_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unwrap(model)(x)
    return 3 * counter.get_total_flops() / 2


def measure(base: TrainConfig, variant: str, args: argparse.Namespace, work: Path) -> dict:
    """Images/s, MFU, the first step's seconds, peak GPU memory and the loader's share of a variant."""
    parts = variant.split("+")
    cfg = TrainConfig(**{**vars(base), "precision": parts[0], "channels_last": "cl" in parts,
                         "compile": "compile" in parts, "output_dir": work / f"run-{variant}"})  # fmt: skip
    info = distributed.init(cfg.device, cfg.dist_timeout)
    cuda = info.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(info.device)
    run = setup(cfg, info)
    loader, stepper = run.loaders["train"], run.stepper
    flops = flops_per_image(stepper.model, cfg.image_size, run.data_config.in_chans, info.device)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(info.device)

    def steps(n: int) -> float:
        target, t0 = stepper.updates + n, time.perf_counter()
        while stepper.updates < target:
            loader.sampler.set_epoch(stepper.updates)
            train_one_epoch(stepper, loader, EpochProgress(), lambda u: u >= target, progress=False)
        sync()
        return time.perf_counter() - t0

    first = steps(1)  # compilation and cuDNN autotuning land here
    steps(max(0, args.warmup - 1))
    seconds = steps(args.steps)
    ips = args.steps * cfg.batch_size / seconds
    peak = peak_flops(info.device, parts[0], args.peak_tflops)
    memory = torch.cuda.max_memory_allocated(info.device) / 2**30 if cuda else None
    # The cache is gathered in the main process, so the loader's time adds to the step's: time it alone.
    batches, t0 = 0, time.perf_counter()
    while batches < args.steps:
        for batch in loader:
            batch["image"].to(info.device, non_blocking=True)
            batches += 1
            if batches == args.steps:
                break
    sync()
    loader_share = (time.perf_counter() - t0) / seconds
    return {"variant": variant, "images_per_s": ips, "gflops_per_image": flops / 1e9,
            "mfu": ips * flops / peak if peak else None, "device": describe(info.device), "first_step_s": first,
            "peak_gib": memory, "loader_share": loader_share}  # fmt: skip


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="convnext_base")
    parser.add_argument("--image_size", type=int, default=384)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--variants", default="fp32,bf16+cl,bf16+cl+compile", help="comma-separated")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile, autotuning)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--peak_tflops", type=float, default=None, help="the device's peak, if not in the table")
    parser.add_argument("--images", type=int, default=None, help="phantom films to train on (default: enough)")
    parser.add_argument("--workers", type=int, default=None, help="processes for rendering and caching")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n_images = args.images or max(256, 2 * args.batch_size * 4)
        phantom.write_dataset(work / "data", max(8, n_images // 4), args.image_size, seed=0, workers=args.workers,
                              progress=False)  # fmt: skip
        prepare_cache(PrepareConfig(data_dir=work / "data", image_size=args.image_size, workers=args.workers,
                                    progress=False))
        base = TrainConfig(data_dir=work / "data", model=args.model, image_size=args.image_size,
                           batch_size=args.batch_size, num_workers=0, max_train_samples=0, max_test_samples=0,
                           device=args.device, progress=False, val_fraction=0.05)  # fmt: skip
        print(f"{args.model} at {args.image_size} px, batch {args.batch_size}; cores {os.cpu_count()}")
        print(f"{'variant':<20}{'images/s':>10}{'GFLOP/img':>11}{'TFLOP/s':>9}{'MFU':>8}{'1st step s':>11}"
              f"{'peak GiB':>10}{'loader':>8}  device")  # fmt: skip
        for variant in args.variants.split(","):
            r = measure(base, variant, args, work)
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
            achieved = r["images_per_s"] * r["gflops_per_image"] / 1e3
            memory = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "n/a"
            print(f"{variant:<20}{r['images_per_s']:>10.1f}{r['gflops_per_image']:>11.2f}{achieved:>9.3f}{mfu:>8}"
                  f"{r['first_step_s']:>11.2f}{memory:>10}{100 * r['loader_share']:>7.1f}%  {r['device']}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
