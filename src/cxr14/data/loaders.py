"""From config to DataLoaders: metadata -> patient-wise splits -> image sources -> loaders.

Images come from a `cxr14 prepare` cache when one fits the split and size, else from the PNGs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from cxr14.config import PrepareConfig, TrainConfig
from cxr14.data import cache
from cxr14.data.cache import CacheInfo
from cxr14.data.dataset import FileSource, ImageSource, XrayDataset, collate_skipping_bad
from cxr14.data.datasets.common import check_trainable
from cxr14.data.images import check_data_dir, describe_missing, index_images
from cxr14.data.metadata import Metadata, find_csv, read_data_entry
from cxr14.data.sampler import EpochSampler
from cxr14.data.splits import Split, make_splits
from cxr14.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitData:
    """A split and the dataset serving its pixels (row i of split = item i of dataset)."""

    split: Split
    dataset: XrayDataset


def read_metadata(cfg: TrainConfig | PrepareConfig, views: str | None = None) -> Metadata:
    """The dataset's table of films, in the layout --dataset names (NIH's unless told otherwise)."""
    from cxr14.data.datasets import detect

    if cfg.dataset not in ("csv", "folder"):  # those two say themselves what they expected
        check_data_dir(cfg.data_dir)
    detect.check_layout(cfg.dataset, cfg.data_dir)  # a folder of another layout is named before it is misread
    views = views or getattr(cfg, "views", "frontal")
    labels, uncertain = getattr(cfg, "labels", None), getattr(cfg, "uncertain", "ignore")
    if cfg.dataset == "nih":
        meta = read_data_entry(cfg.csv or find_csv(cfg.data_dir))
    elif cfg.dataset == "csv":
        from cxr14.data.datasets import table

        meta = table.read(cfg.csv, labels, uncertain)
    elif cfg.dataset == "folder":
        from cxr14.data.datasets import folder

        opts = folder.FolderOptions(cfg.negative, cfg.patient_pattern, cfg.patient_scope or "split")
        meta = folder.read(cfg.data_dir, labels, opts)
    elif cfg.dataset == "chexpert":
        from cxr14.data.datasets import chexpert

        meta = chexpert.read(cfg.data_dir, labels, uncertain, views)
    elif cfg.dataset == "mimic":
        from cxr14.data.datasets import mimic

        meta = mimic.read(cfg.data_dir, labels, uncertain, views, getattr(cfg, "labeler", "chexpert"))
    elif cfg.dataset == "padchest":
        from cxr14.data.datasets import padchest

        meta = padchest.read(cfg.data_dir, labels, views)
    else:
        from cxr14.data.datasets import vindr

        meta = vindr.read(cfg.data_dir, labels, getattr(cfg, "readers", "any"))
    if len(meta) == 0:
        frontal = " frontal" if views == "frontal" else ""
        raise UserError(f"{meta.source} lists no{frontal} films{' (--views all reads every one)' * bool(frontal)}.")
    log.info("metadata: %s (%s: %d images, %d patients, labels %s)", meta.source, cfg.dataset, len(meta),
             len(np.unique(meta.patients)), ", ".join(meta.label_names))  # fmt: skip
    return meta


def load_splits(cfg: TrainConfig) -> dict[str, Split]:
    """Read the dataset and split it patient-wise, applying the sample caps."""
    meta = read_metadata(cfg)
    return make_splits(meta, cfg.data_dir, cfg.val_fraction, cfg.seed, (cfg.max_train_samples, cfg.max_test_samples))


def image_index(cfg: TrainConfig | PrepareConfig, meta_root: Path | None) -> Any:
    """name -> image path: NIH's files found in its image folders; other datasets' names are paths under a root."""
    if cfg.dataset == "nih":
        return index_images(cfg.data_dir)
    return _UnderRoot(meta_root or cfg.data_dir)


class _UnderRoot:
    """A mapping name -> root / name for the files that exist (a stat per lookup)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str) -> Path | None:
        path = self.root / name
        return path if path.is_file() else None

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __getitem__(self, name: str) -> Path:
        path = self.get(name)
        if path is None:
            raise KeyError(name)
        return path


def missing_message(missing: list[str], cfg: TrainConfig | PrepareConfig, root: Path | None) -> str:
    """One paragraph for films the metadata names and the folder lacks (NIH's says how to download them)."""
    if cfg.dataset == "nih":
        return describe_missing(missing, cfg.data_dir)
    return (
        f"{len(missing)} film(s) that the {cfg.dataset} metadata lists are not under {root} (e.g. "
        f"{', '.join(missing[:5])}). Check --data_dir (the dataset folder as it was distributed), or pass "
        f"--on_bad_image skip to go on with the films that are present (the missing ones are counted)."
    )


def attach_paths(split: Split, index: Any, cfg: TrainConfig) -> tuple[Split, list[Path]]:
    """Paths for a split's images; absent files stop the run or are dropped and counted."""
    paths = [index.get(n) for n in split.names]
    missing = [n for n, p in zip(split.names, paths, strict=True) if p is None]
    if missing and cfg.on_bad_image == "fail":
        raise UserError(missing_message(missing, cfg, split.root))
    if missing:
        log.warning("%s: skipping %d missing image(s), e.g. %s", split.name, len(missing), ", ".join(missing[:3]))
        keep = np.flatnonzero([p is not None for p in paths])
        split, paths = split.take(keep), [paths[i] for i in keep]
    if len(split) == 0:
        raise UserError(f"The {split.name} split has no images under {cfg.data_dir}.")
    return split, [p for p in paths if p is not None]


def default_cache_dir(cfg: TrainConfig | PrepareConfig) -> Path:
    """Caches live beside the images unless told otherwise (a csv dataset's: beside its CSV)."""
    if cfg.cache_dir is not None:
        return cfg.cache_dir
    return (cfg.csv.parent if cfg.dataset == "csv" and cfg.csv is not None else cfg.data_dir) / "cache"


def prepare_cache(cfg: PrepareConfig) -> CacheInfo:
    """Decode every image named in the CSV once into the resized cache for `cfg.image_size`."""
    meta = read_metadata(cfg, views="all")  # every film, lateral ones too: a cache serves any subset
    index = image_index(cfg, meta.root)
    present = [n for n in meta.names if n in index]
    missing = [n for n in meta.names if n not in index]
    if missing and cfg.on_bad_image == "fail":
        raise UserError(missing_message(missing, cfg, meta.root))
    if missing:
        log.warning("skipping %d missing image(s), e.g. %s", len(missing), ", ".join(missing[:3]))
    target = default_cache_dir(cfg)
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
    """The cache if one is complete, current and large enough for this split; else the image files."""
    cache_dir = default_cache_dir(cfg)
    source, reason = cache.open_cache(cache_dir, list(split.names), paths, cfg.image_size)
    if source is None:
        log.info("%s: decoding %s on the fly (%s); `cxr14 prepare` makes this faster", split.name, _kinds(paths),
                 reason)  # fmt: skip
        return FileSource(paths, cfg.image_size)
    log.info("%s: %s", split.name, reason)
    return source


def _kinds(paths: list[Path]) -> str:
    """What the files are, for the log: "PNGs", "JPEGs and DICOMs", ..."""
    names = {".png": "PNGs", ".jpg": "JPEGs", ".jpeg": "JPEGs", ".dcm": "DICOMs", ".dicom": "DICOMs"}
    found = sorted({names.get(p.suffix.lower(), "image files") for p in paths if p is not None})
    return " and ".join(found) or "image files"


def build_datasets(cfg: TrainConfig, names: tuple[str, ...] = ("train", "val", "test")) -> dict[str, SplitData]:
    """The named splits' datasets (train / val / test), images resolved and missing ones handled."""
    splits = load_splits(cfg)
    if "train" in names and cfg.dataset != "nih":  # the user's own labels: one with a single class cannot be learnt
        check_trainable(splits["train"].labels, splits["train"].label_names, f"{cfg.csv or cfg.data_dir}")
    index = image_index(cfg, splits["train"].root)
    out = {}
    for name in names:
        split = splits[name]
        split, paths = attach_paths(split, index, cfg)
        source = image_source(split, paths, cfg)
        out[name] = SplitData(split, XrayDataset(source, split.labels, skip_bad=cfg.on_bad_image == "skip"))
        log.info("%s: %d images, %d patients", name, len(split), len(np.unique(split.patients)))
    return out


def usable_workers(asked: int) -> int:
    """--num_workers, at most the cores this process may use: more worker processes than cores only queue for
    them (and PyTorch warns about it, which is no message for a user)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(asked, cores)


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
    workers = 0 if getattr(dataset.source, "gathers_batches", False) else usable_workers(cfg.num_workers)
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
