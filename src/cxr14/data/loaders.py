"""From config to DataLoaders: metadata -> patient-wise splits -> image sources -> loaders.

Images come from a `cxr14 prepare` cache when one fits the split and size, else from the PNGs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from cxr14.config import PrepareConfig, TrainConfig
from cxr14.data import cache
from cxr14.data.cache import CacheInfo
from cxr14.data.dataset import ImageSource, PngSource, XrayDataset, collate_skipping_bad
from cxr14.data.images import check_data_dir, describe_missing, index_images
from cxr14.data.metadata import find_csv, read_data_entry
from cxr14.data.sampler import EpochSampler
from cxr14.data.splits import Split, make_splits
from cxr14.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitData:
    """A split and the dataset serving its pixels (row i of split = item i of dataset)."""

    split: Split
    dataset: XrayDataset


def load_splits(cfg: TrainConfig) -> dict[str, Split]:
    """Read the CSV and split it patient-wise, applying the sample caps."""
    check_data_dir(cfg.data_dir)
    meta = read_data_entry(cfg.csv or find_csv(cfg.data_dir))
    log.info("metadata: %s (%d images, %d patients)", meta.source, len(meta), len(np.unique(meta.patients)))
    return make_splits(meta, cfg.data_dir, cfg.val_fraction, cfg.seed, (cfg.max_train_samples, cfg.max_test_samples))


def attach_paths(split: Split, index: dict[str, Path], cfg: TrainConfig) -> tuple[Split, list[Path]]:
    """Paths for a split's images; absent files stop the run or are dropped and counted."""
    paths = [index.get(n) for n in split.names]
    missing = [n for n, p in zip(split.names, paths, strict=True) if p is None]
    if missing and cfg.on_bad_image == "fail":
        raise UserError(describe_missing(missing, cfg.data_dir))
    if missing:
        log.warning("%s: skipping %d missing image(s), e.g. %s", split.name, len(missing), ", ".join(missing[:3]))
        keep = np.flatnonzero([p is not None for p in paths])
        split, paths = split.take(keep), [paths[i] for i in keep]
    if len(split) == 0:
        raise UserError(f"The {split.name} split has no images under {cfg.data_dir}.")
    return split, [p for p in paths if p is not None]


def default_cache_dir(data_dir: Path, cache_dir: Path | None) -> Path:
    """Caches live beside the images unless told otherwise."""
    return cache_dir or data_dir / "cache"


def prepare_cache(cfg: PrepareConfig) -> CacheInfo:
    """Decode every image named in the CSV once into the resized cache for `cfg.image_size`."""
    check_data_dir(cfg.data_dir)
    meta = read_data_entry(cfg.csv or find_csv(cfg.data_dir))
    index = index_images(cfg.data_dir)
    present = [n for n in meta.names if n in index]
    missing = [n for n in meta.names if n not in index]
    if missing and cfg.on_bad_image == "fail":
        raise UserError(describe_missing(missing, cfg.data_dir))
    if missing:
        log.warning("skipping %d missing image(s), e.g. %s", len(missing), ", ".join(missing[:3]))
    target = default_cache_dir(cfg.data_dir, cfg.cache_dir)
    log.info("caching %d images at %d px into %s", len(present), cfg.image_size, target)
    return cache.prepare(
        cfg.data_dir,
        present,
        [index[n] for n in present],
        cfg.image_size,
        target,
        workers=cfg.workers,
        progress=cfg.progress,
        on_bad_image=cfg.on_bad_image,
    )


def run_prepare(cfg: PrepareConfig) -> CacheInfo:
    """`cxr14 prepare`: the cache, and one line saying where it is."""
    info = prepare_cache(cfg)
    skipped = f", {info.n_bad} unreadable image(s) marked bad" if info.n_bad else ""
    print(f"cache ready: {info.directory} ({info.n_images} images at {info.size} px{skipped})")
    return info


def image_source(split: Split, paths: list[Path], cfg: TrainConfig) -> ImageSource:
    """The cache if one is complete, current and large enough for this split; else the PNGs."""
    cache_dir = default_cache_dir(cfg.data_dir, cfg.cache_dir)
    source, reason = cache.open_cache(cache_dir, list(split.names), paths, cfg.image_size)
    if source is None:
        log.info("%s: decoding PNGs on the fly (%s); `cxr14 prepare` makes this faster", split.name, reason)
        return PngSource(paths, cfg.image_size)
    log.info("%s: %s", split.name, reason)
    return source


def build_datasets(cfg: TrainConfig, names: tuple[str, ...] = ("train", "val", "test")) -> dict[str, SplitData]:
    """The named splits' datasets (train / val / test), images resolved and missing ones handled."""
    splits = load_splits(cfg)
    index = index_images(cfg.data_dir)
    out = {}
    for name in names:
        split = splits[name]
        split, paths = attach_paths(split, index, cfg)
        source = image_source(split, paths, cfg)
        out[name] = SplitData(split, XrayDataset(source, split.labels, skip_bad=cfg.on_bad_image == "skip"))
        log.info("%s: %d images, %d patients", name, len(split), len(np.unique(split.patients)))
    return out


def make_loader(
    dataset: XrayDataset,
    cfg: TrainConfig,
    train: bool,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    rows: np.ndarray | None = None,
) -> DataLoader:
    """A DataLoader of uint8 batches: this process's shard, shuffled per epoch when training.

    A cache at the training size is read in the main process: a batch is one memmap gather, and
    `benchmarks/data_pipeline.py` measured that 4x faster than the same gather in 2 workers. Under torchrun
    every process maps the same cache file read-only, so a node holds its pages once in the page cache.
    Evaluation shards are padded to equal length by the sampler; `distributed.merge_predictions` drops the
    repeats by dataset index. `rows` (evaluation): score only these dataset rows.
    """
    workers = 0 if getattr(dataset.source, "gathers_batches", False) else cfg.num_workers
    # The order of images comes from the sampler (seed + epoch), and the loader has its own generator (it draws
    # a worker seed from it for every new iterator). Neither touches the global RNG that augmentation uses, so
    # results do not depend on the worker count, or on whether pixels come from PNGs (workers) or the cache.
    order: EpochSampler | DistributedSampler | list[int] | None = None
    if rows is not None:  # these rows only, in order, every process its own share (evaluation only)
        order = [int(r) for r in rows[rank::world_size]]
    elif train:
        order = EpochSampler(dataset, rank, world_size, cfg.seed)
    elif world_size > 1:
        order = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size if train else cfg.batch_size * 2,
        sampler=order,
        drop_last=train and isinstance(order, EpochSampler) and order.num_samples > cfg.batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        collate_fn=collate_skipping_bad,
        generator=torch.Generator().manual_seed(cfg.seed + 1),
    )
