"""How much faster is training input from the resized cache than decoding PNGs per sample?

Measures, on the same 1024x1024 PNGs, in one run:
  (a) the original per-sample pipeline: PIL open -> RGB -> Resize(384) -> ToTensor -> Normalize in
      DataLoader workers, float batches shipped to the main process;
  (b) the cached pipeline as the trainer runs it: XrayDataset(CacheSource) gathering whole uint8
      batches -> DeviceTransform on the device (the CPU here) -> normalised float [B, 1, S, S], the
      input of the in_chans=1 model; (b3) the same normalised for a 3-channel model with ImageNet's
      per-channel statistics, [B, 3, S, S] as (a) delivers;
and `prepare`'s throughput against the single-process decode rate times the workers, plus its
peak memory (main process + children) at N/4 and N images, which should not grow with N.

Prints figures, asserts nothing. Example:
    .venv/bin/python benchmarks/data_pipeline.py --n 512
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cxr14.data.films.decode import read_gray
from cxr14.data.films.pixels import resize_gray
from cxr14.data.pipeline.cache import open_cache, prepare
from cxr14.data.pipeline.dataset import XrayDataset, collate_skipping_bad
from cxr14.data.pipeline.transforms import DeviceTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, help="folder of PNGs (searched recursively); default: synthetic ones")
    p.add_argument("--n", type=int, default=512, help="number of images (default 512)")
    p.add_argument("--size", type=int, default=384, help="training image size (default 384)")
    p.add_argument("--batch", type=int, default=32, help="batch size of both pipelines (default 32)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader and prepare workers (default 2)")
    p.add_argument("--work_dir", type=Path, help="where synthetic PNGs and caches go (default: a temp dir)")
    p.add_argument("--device", help="where (b) normalises: cuda if there is one, else cpu")
    p.add_argument("--cached_seconds", type=float, default=4.0, help="how long to time pipeline (b)")
    return p.parse_args()


# --- synthetic images -----------------------------------------------------------------------------


def _synthetic_png(path: str, seed: int, side: int = 1024) -> None:
    """A chest-film-like picture: body, two dark lung fields, spine, ribs, film grain. Compresses to
    roughly the size of an NIH PNG, so decoding costs about the same."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    img = 170 - 60 * ((xx - 0.5) ** 2 + (yy - 0.55) ** 2)
    for cx in (0.32 + rng.normal(0, 0.02), 0.68 + rng.normal(0, 0.02)):
        lung = ((xx - cx) / 0.16) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1
        img = np.where(lung, img - 70 + 12 * np.sin(yy * 40 + rng.uniform(0, 6)), img)
    img += 50 * np.exp(-(((xx - 0.5) / 0.04) ** 2))
    img += rng.normal(0, 4, (side, side))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def make_images(folder: Path, n: int, workers: int) -> list[Path]:
    """The phantom generator if it is there (the project's own fake NIH), else simple synthetic PNGs."""
    existing = sorted(folder.rglob("*.png")) if folder.is_dir() else []
    if len(existing) >= n:
        print(f"images: {n} PNGs already in {folder}")
        return existing[:n]
    try:
        from cxr14.data.phantom import write_dataset  # type: ignore[import-not-found]

        write_dataset(folder, n // 3 + 8, 1024, 0)  # ~3.5 images per phantom patient
        paths = sorted(folder.rglob("*.png"))
        if len(paths) >= n:
            print(f"images: {n} from cxr14.data.phantom.write_dataset")
            return paths[:n]
    except Exception as exc:  # the phantom module is optional (and may be mid-edit): fall back
        print(f"(phantom generator not usable: {type(exc).__name__}: {exc}; using simple synthetic PNGs)")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = [folder / "images" / f"{k:08d}_000.png" for k in range(n)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_synthetic_png, [str(p) for p in paths], range(n), chunksize=8))
    print(f"images: {n} synthetic 1024x1024 PNGs made by this script")
    return paths


# --- (a) the original per-sample pipeline ---------------------------------------------------------


class OriginalDataset(Dataset):
    """What the first trainer did: full PIL decode, RGB, resize and normalise per sample, in a worker."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths = [str(p) for p in paths]
        self.transform = transforms.Compose(
            [transforms.Resize(size), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.paths[i]) as img:
            rgb = img.convert("RGB")
        return self.transform(rgb), torch.zeros(14)


def rate_original(paths: list[Path], args: argparse.Namespace) -> tuple[float, tuple[int, ...]]:
    """images/s over one epoch, timed from the first batch (worker start-up left out)."""
    loader = DataLoader(OriginalDataset(paths, args.size), batch_size=args.batch, num_workers=args.workers)
    it = iter(loader)
    first, _ = next(it)
    start, n = time.perf_counter(), 0
    for images, _ in it:
        n += images.shape[0]
    return n / (time.perf_counter() - start), tuple(first.shape)


# --- (b) the cached pipeline ----------------------------------------------------------------------


class Normalise:
    """The trainer's own device transform (eval mode), timed as the "device" step of pipeline (b)."""

    def __init__(self, device: torch.device, in_chans: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.device = device
        self.transform = DeviceTransform(mean, std, in_chans, augment=None)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.transform(images.to(self.device, non_blocking=True))

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def cached_loader(source, args: argparse.Namespace) -> DataLoader:
    dataset = XrayDataset(source, np.zeros((len(source), 14), dtype=np.float32), skip_bad=True)
    return DataLoader(
        dataset,
        batch_size=args.batch,
        num_workers=args.workers,
        collate_fn=collate_skipping_bad,
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
        pin_memory=args.device.type == "cuda",
    )


def rate_cached(loader: DataLoader, seconds: float, normalise) -> tuple[float, tuple[int, ...]]:
    """images/s over whole epochs after a warm-up epoch, for at least `seconds`."""
    shape: tuple[int, ...] = ()
    for batch in loader:  # warm-up: workers start, pages come into the page cache
        shape = tuple(normalise(batch["image"]).shape) if normalise else tuple(batch["image"].shape)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        for batch in loader:
            if normalise is not None:
                normalise(batch["image"])
            n += batch["image"].shape[0]
    if normalise is not None:
        normalise.sync()
    return n / (time.perf_counter() - start), shape


def rate_normalise_only(args: argparse.Namespace, normalise) -> float:
    x = torch.randint(0, 256, (args.batch, 1, args.size, args.size), dtype=torch.uint8, device=args.device)
    normalise(x)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 1.0:
        normalise(x)
        n += args.batch
    normalise.sync()
    return n / (time.perf_counter() - start)


# --- prepare --------------------------------------------------------------------------------------


class PeakMemory:
    """Peak memory of this process plus all its children, sampled every 20 ms, as the sum of PSS
    (proportional set size): forked workers share the parent's pages, which a sum of RSS would
    count once per process."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # exited between listing and reading
                    total += proc.memory_full_info().pss
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rate_decode_one_process(paths: list[Path], size: int) -> float:
    start = time.perf_counter()
    for p in paths:
        read_gray(p, size)
    return len(paths) / (time.perf_counter() - start)


def timed_prepare(paths: list[Path], args: argparse.Namespace, cache_dir: Path) -> float:
    """images/s of one fresh build (no memory sampling: reading smaps costs CPU the build needs)."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    prepare(paths[0].parent, [p.name for p in paths], paths, args.size, cache_dir, workers=args.workers, progress=False)
    return len(paths) / (time.perf_counter() - start)


def prepare_memory(paths: list[Path], args: argparse.Namespace, cache_dir: Path) -> int:
    """Peak PSS of main + workers during one fresh build, above what the main process held before."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    before = psutil.Process().memory_full_info().pss
    with PeakMemory() as mem:
        prepare(
            paths[0].parent, [p.name for p in paths], paths, args.size, cache_dir, workers=args.workers, progress=False
        )
    return mem.peak - before


def resize_tolerance(paths: list[Path], size: int) -> tuple[int, float]:
    """Max and mean |cache built at 4/3 size, resized on read - decoded at size| in grey levels."""
    diffs = []
    for p in paths:
        big = Image.fromarray(read_gray(p, size * 4 // 3))
        twice = np.asarray(resize_gray(big, size), dtype=np.int16)
        diffs.append(np.abs(twice - read_gray(p, size)))
    d = np.stack(diffs)
    return int(d.max()), float(d.mean())


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        if args.images:
            paths = sorted(args.images.rglob("*.png"))[: args.n]
            print(f"images: {len(paths)} PNGs from {args.images}")
        else:
            paths = make_images(work / "png", args.n, args.workers)
        mib = sum(p.stat().st_size for p in paths) / len(paths) / 2**20
        print(f"  mean file size {mib:.2f} MiB; all files in the page cache (timing decoding, not the disk)")
        run(paths, args, work)


def run(paths: list[Path], args: argparse.Namespace, work: Path) -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes on these {os.cpu_count()} cores skew rates)")
    report_prepare(paths, args, work)
    report_pipelines(paths, args, work / "cache")
    worst, mean = resize_tolerance(paths[:32], args.size)
    print(
        f"\ncache at {args.size * 4 // 3} px resized to {args.size} on read vs decoded at {args.size}: "
        f"max {worst}, mean {mean:.2f} grey levels (32 images)"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def report_prepare(paths: list[Path], args: argparse.Namespace, work: Path) -> None:
    n, cores = len(paths), args.workers
    one = rate_decode_one_process(paths, args.size)
    print(f"\nsingle-process read_gray(path, {args.size}):  {one:8.1f} img/s ({1000 / one:.1f} ms/img)")
    peak_q = prepare_memory(paths[: n // 4], args, work / "cache_memory")
    peak_p = prepare_memory(paths, args, work / "cache_memory")
    rate_p = timed_prepare(paths, args, work / "cache")
    print(
        f"prepare, workers={cores}, {n} images:      {rate_p:8.1f} img/s = {rate_p / (one * cores):.0%} "
        f"of {cores} x single-process"
    )
    print(
        f"prepare peak memory (PSS of main + workers, above main before): {peak_q / 2**20:.0f} MiB for "
        f"{n // 4} images, {peak_p / 2**20:.0f} MiB for {n} (array file {n * args.size**2 / 2**20:.0f} MiB)"
    )


def report_pipelines(paths: list[Path], args: argparse.Namespace, cache_dir: Path) -> None:
    rate_a, shape_a = rate_original(paths, args)
    source, reason = open_cache(cache_dir, [p.name for p in paths], paths, args.size)
    assert source is not None, reason
    grey = (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
    # What the trainer feeds its in_chans=1 model, and what a 3-channel model with per-channel stats needs.
    one = Normalise(args.device, 1, *grey)
    three = Normalise(args.device, 3, IMAGENET_MEAN, IMAGENET_STD)
    # The trainer gathers cache batches in the main process (make_loader); workers shown for comparison.
    in_process = cached_loader(source, argparse.Namespace(**{**vars(args), "workers": 0}))
    in_workers = cached_loader(source, args)
    rate_b, shape_b = rate_cached(in_process, args.cached_seconds, one)
    rate_b3, shape_b3 = rate_cached(in_process, args.cached_seconds, three)
    rate_bw, _ = rate_cached(in_workers, args.cached_seconds, one)
    rate_u8, _ = rate_cached(in_process, args.cached_seconds / 2, None)
    where = args.device.type
    print(f"\n(a) original per-sample pipeline:      {rate_a:8.1f} img/s  batches {shape_a}")
    print(f"(b) cache + normalise on {where}:".ljust(39) + f"{rate_b:8.1f} img/s  batches {shape_b} (in_chans=1)")
    print(f"    (b)/(a) = {rate_b / rate_a:.1f}   [cache gathered in the main process, as the trainer does]")
    print("(b3) same, 3 channels, RGB stats:".ljust(39) + f"{rate_b3:8.1f} img/s  batches {shape_b3}")
    print(f"    (b3)/(a) = {rate_b3 / rate_a:.1f}")
    print(
        f"    (b) with {args.workers} DataLoader workers:".ljust(39)
        + f"{rate_bw:8.1f} img/s = {rate_bw / rate_a:.1f} x (a)"
    )
    print(f"    gather alone (uint8 batches):      {rate_u8:8.1f} img/s = {rate_u8 / rate_a:.1f} x (a)")
    for name, norm in (("1 channel", one), ("3 channels", three)):
        rate = rate_normalise_only(args, norm)
        print(f"    normalise alone, {name}, {where}:".ljust(39) + f"{rate:8.1f} img/s = {rate / rate_a:.1f} x (a)")


if __name__ == "__main__":
    main()
