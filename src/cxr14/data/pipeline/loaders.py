"""From config to DataLoaders: metadata -> patient-wise splits -> image sources -> loaders.

Images come from a `cxr14 prepare` cache when one fits the split and size, else from the PNGs.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from cxr14.config import PrepareConfig, TrainConfig
from cxr14.data.datasets import mix, registry
from cxr14.data.datasets.base import Metadata, Origin, ReadOptions
from cxr14.data.datasets.common import check_trainable
from cxr14.data.datasets.mix import Source
from cxr14.data.pipeline import cache
from cxr14.data.pipeline.cache import CacheInfo
from cxr14.data.pipeline.dataset import ConcatSource, FileSource, ImageSource, XrayDataset, collate_skipping_bad
from cxr14.data.pipeline.sampler import EpochSampler
from cxr14.data.splits import Split, cap, make_splits
from cxr14.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitData:
    """A split and the dataset serving its pixels (row i of split = item i of dataset)."""

    split: Split
    dataset: XrayDataset


def run_sources(cfg: TrainConfig | PrepareConfig) -> list[Source]:
    """The datasets a command reads: one, or several (--dataset A,B with --data_dir X,Y, or --mix FILE)."""
    return mix.sources(cfg.dataset, cfg.data_dir, ReadOptions.of(cfg), cfg.mix)


def read_metadata(cfg: TrainConfig | PrepareConfig, views: str | None = None) -> Metadata:
    """The table of films of the dataset(s) --dataset names (NIH's unless told otherwise); several are merged."""
    found = run_sources(cfg)
    parts = [(s, _read(s, views)) for s in found]
    meta = parts[0][1] if len(parts) == 1 and cfg.mix is None else _pick(mix.merge_tables(parts), cfg.labels)
    log.info("metadata: %s (%s: %d images, %d patients, labels %s)", meta.source, cfg.dataset, len(meta),
             len(np.unique(meta.patients)), ", ".join(meta.label_names))  # fmt: skip
    return meta


def _read(source: Source, views: str | None) -> Metadata:
    """One source's table; `views` overrides its option (the cache holds every film, lateral ones too)."""
    options = source.options if views is None else replace(source.options, views=views)
    meta = registry.read(source.dataset, source.data_dir, options)
    if len(meta) == 0:
        frontal = " frontal" if options.views == "frontal" else ""
        raise UserError(f"{meta.source} lists no{frontal} films{' (--views all reads every one)' * bool(frontal)}.")
    return meta


def _chosen(names: tuple[str, ...], labels: str) -> list[int]:
    """The columns of --labels among a mix's merged findings."""
    asked = [n.strip() for n in labels.split(",") if n.strip()]
    absent = [n for n in asked if n not in names]
    if absent:
        raise UserError(f"--labels {', '.join(absent)}: the mixed datasets' findings are {', '.join(names)}.")
    return [names.index(n) for n in asked]


def _pick(meta: Metadata, labels: str | None) -> Metadata:
    """--labels among a mix's merged findings (all of them without it)."""
    if not labels:
        return meta
    cols = _chosen(meta.label_names, labels)
    return replace(meta, labels=meta.labels[:, cols], label_names=tuple(meta.label_names[j] for j in cols))


def load_splits(cfg: TrainConfig) -> dict[str, Split]:
    """Read the dataset(s) and split patient-wise, applying the sample caps. Mixed datasets are split each by its
    own rules (official lists, its own split, else seeded by patient), then joined split by split."""
    caps = (cfg.max_train_samples, cfg.max_test_samples)
    found = run_sources(cfg)
    if len(found) == 1 and cfg.mix is None:
        meta = read_metadata(cfg)
        return make_splits(meta, cfg.data_dir, cfg.val_fraction, cfg.seed, caps)
    def own(s: Source) -> tuple[Source, Metadata, dict[str, Split]]:
        meta = _read(s, None)
        return s, meta, make_splits(meta, s.data_dir, cfg.val_fraction, cfg.seed, (0, 0))

    # The sources are read side by side: pandas' parser leaves the GIL while it tokenises, so on two cores three
    # datasets read as one take less than the three read one after another (benchmarks/metadata_read.py).
    with ThreadPoolExecutor(max_workers=min(len(found), usable_workers(len(found)))) as pool:
        parts = list(pool.map(own, found))
    splits = mix.join_splits(parts)
    splits = {"train": cap(splits["train"], caps[0], cfg.seed), "val": splits["val"],
              "test": cap(splits["test"], caps[1], cfg.seed)}  # the caps are the run's, over every source
    if cfg.labels:
        cols = _chosen(splits["train"].label_names, cfg.labels)
        kept = tuple(splits["train"].label_names[j] for j in cols)
        splits = {k: replace(v, labels=v.labels[:, cols], label_names=kept) for k, v in splits.items()}
    log.info("metadata: %d datasets mixed (%s: %d images; labels %s); each split by its own rules, its patients "
             "numbered apart", len(found), ", ".join(f"{s.name} {len(m)}" for s, m, _ in parts),
             sum(len(v) for v in splits.values()), ", ".join(splits["train"].label_names))  # fmt: skip
    return splits if cfg.labels else _learnable(splits)


def _learnable(splits: dict[str, Split]) -> dict[str, Split]:
    """A mix's findings that its training films can teach: both classes among their known labels. The others (a
    finding no source labels negative, like CheXpert's No Finding, blank unless positive) are left out and named;
    --labels chooses the set instead."""
    train = splits["train"].labels
    keep = [j for j in range(train.shape[1]) if (train[:, j] == 1).any() and (train[:, j] == 0).any()]
    if len(keep) == train.shape[1]:
        return splits
    names = splits["train"].label_names
    log.warning("left out of the mix's findings, for want of a positive or a negative training film: %s",
                ", ".join(n for j, n in enumerate(names) if j not in keep))  # fmt: skip
    kept = tuple(names[j] for j in keep)
    return {k: replace(s, labels=s.labels[:, keep], label_names=kept) for k, s in splits.items()}


def image_index(cfg: TrainConfig | PrepareConfig, meta: Metadata | Split) -> Any:
    """name -> image path: each dataset's own index where it has one (NIH's images/ folders), else its names are
    paths under its root; mixed datasets' names (SOURCE:NAME) go to their source's."""
    if not meta.origins:
        return _index(cfg.dataset, cfg.data_dir, meta.root)
    return _BySource({o.name: _index(o.dataset, o.data_dir, o.root) for o in meta.origins})


def _index(dataset: str, data_dir: Path, root: Path | None) -> Any:
    own = getattr(registry.get(dataset).reader(), "image_index", None)  # an optional hook of the reader module
    return own(data_dir) if own is not None else _UnderRoot(root or data_dir)


class _BySource:
    """A mapping SOURCE:NAME -> path over each source's own index."""

    def __init__(self, indexes: dict[str, Any]) -> None:
        self.indexes = indexes

    def get(self, name: str) -> Path | None:
        src, own = mix.own_name(name)
        index = self.indexes.get(src)
        return None if index is None else index.get(own)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __getitem__(self, name: str) -> Path:
        path = self.get(name)
        if path is None:
            raise KeyError(name)
        return path


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
    one = "," not in cfg.dataset and cfg.mix is None
    describe = getattr(registry.get(cfg.dataset).reader(), "describe_missing", None) if one else None
    if describe is not None:
        return describe(missing, cfg.data_dir)
    return (
        f"{len(missing)} film(s) that the {cfg.dataset} metadata lists are not under {root or cfg.data_dir} (e.g. "
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


def default_cache_dir(cfg: TrainConfig | PrepareConfig, origin: Origin | None = None) -> Path:
    """Caches live beside the images unless told otherwise (a csv dataset's: beside its CSV); with several
    datasets, each has its own (beside its images, or CACHE_DIR/SOURCE)."""
    if origin is not None:
        if cfg.cache_dir is not None:
            return cfg.cache_dir / origin.name
        return (origin.root if not registry.get(origin.dataset).folder and origin.root else origin.data_dir) / "cache"
    if cfg.cache_dir is not None:
        return cfg.cache_dir
    beside_csv = not registry.get(cfg.dataset).folder and cfg.csv is not None
    return (cfg.csv.parent if beside_csv and cfg.csv is not None else cfg.data_dir) / "cache"


def prepare_cache(cfg: PrepareConfig) -> list[CacheInfo]:
    """Decode every image the metadata names once into the resized cache for `cfg.image_size` (one per dataset)."""
    meta = read_metadata(cfg, views="all")  # every film, lateral ones too: a cache serves any subset
    index = image_index(cfg, meta)
    present = [n for n in meta.names if n in index]
    missing = [n for n in meta.names if n not in index]
    if missing and cfg.on_bad_image == "fail":
        raise UserError(missing_message(missing, cfg, meta.root))
    if missing:
        log.warning("skipping %d missing image(s), e.g. %s", len(missing), ", ".join(missing[:3]))
    jobs = [(cfg.data_dir, present, default_cache_dir(cfg))]
    if meta.origins:
        by_source = {o.name: [n for n in present if mix.own_name(n)[0] == o.name] for o in meta.origins}
        jobs = [(o.data_dir, by_source[o.name], default_cache_dir(cfg, o)) for o in meta.origins]
    out = []
    for data_dir, names, target in jobs:
        log.info("caching %d images at %d px into %s", len(names), cfg.image_size, target)
        own = [mix.own_name(n)[1] for n in names] if meta.origins else names
        paths = [index[n] for n in names]
        out.append(cache.prepare(data_dir, own, paths, cfg.image_size, target, workers=cfg.workers,
                                 progress=cfg.progress, on_bad_image=cfg.on_bad_image))  # fmt: skip
    return out


def run_prepare(cfg: PrepareConfig) -> list[CacheInfo]:
    """`cxr14 prepare`: the cache(s), and a line for each saying where it is."""
    infos = prepare_cache(cfg)
    for info in infos:
        skipped = f", {info.n_bad} unreadable image(s) marked bad" if info.n_bad else ""
        print(f"cache ready: {info.directory} ({info.n_images} images at {info.size} px{skipped})")
    return infos


def image_source(split: Split, paths: list[Path], cfg: TrainConfig) -> ImageSource:
    """The cache if one is complete, current and large enough for this split; else the image files. Mixed
    datasets: each source's own cache or files, joined."""
    if not split.origins:
        return _one_source(split.name, list(split.names), paths, default_cache_dir(cfg), cfg.image_size)
    assert split.origin is not None
    if np.any(np.diff(split.origin) < 0):
        raise ValueError("a mixed split's films must be grouped by source")
    parts = []
    for k, origin in enumerate(split.origins):
        rows = np.flatnonzero(split.origin == k)
        if len(rows):
            names = [mix.own_name(split.names[r])[1] for r in rows]
            where = f"{split.name} ({origin.name})"
            parts.append(_one_source(where, names, [paths[r] for r in rows], default_cache_dir(cfg, origin),
                                     cfg.image_size))  # fmt: skip
    return ConcatSource(parts) if len(parts) > 1 else parts[0]


def _one_source(what: str, names: list[str], paths: list[Path], cache_dir: Path, size: int) -> ImageSource:
    source, reason = cache.open_cache(cache_dir, names, paths, size)
    if source is None:
        log.info("%s: decoding %s on the fly (%s); `cxr14 prepare` makes this faster", what, _kinds(paths), reason)
        return FileSource(paths, size)
    log.info("%s: %s", what, reason)
    return source


def _kinds(paths: list[Path]) -> str:
    """What the files are, for the log: "PNGs", "JPEGs and DICOMs", ..."""
    names = {".png": "PNGs", ".jpg": "JPEGs", ".jpeg": "JPEGs", ".dcm": "DICOMs", ".dicom": "DICOMs"}
    found = sorted({names.get(p.suffix.lower(), "image files") for p in paths if p is not None})
    return " and ".join(found) or "image files"


def build_datasets(cfg: TrainConfig, names: tuple[str, ...] = ("train", "val", "test")) -> dict[str, SplitData]:
    """The named splits' datasets (train / val / test), images resolved and missing ones handled."""
    splits = load_splits(cfg)
    fixed = all(registry.get(o.dataset).fixed_labels for o in splits["train"].origins) if splits["train"].origins \
        else registry.get(cfg.dataset).fixed_labels  # fmt: skip
    if "train" in names and not fixed:  # the user's own labels: one with a single class cannot be learnt
        check_trainable(splits["train"].labels, splits["train"].label_names, f"{cfg.csv or cfg.data_dir}")
    index = image_index(cfg, splits["train"])
    out = {}
    for name in names:
        split = splits[name]
        split, paths = attach_paths(split, index, cfg)
        source = image_source(split, paths, cfg)
        weights = batch_weights(split) if name == "train" else None
        out[name] = SplitData(split, XrayDataset(source, split.labels, cfg.on_bad_image == "skip", weights))
        log.info("%s: %d images, %d patients", name, len(split), len(np.unique(split.patients)))
    return out


def batch_weights(split: Split) -> np.ndarray | None:
    """Per-image sampling weights giving each mixed dataset its share of the batches (weight / its films), or None
    when the shares follow the sizes (every image equally likely: the plain shuffle)."""
    if split.origin is None or any(o.weight is None for o in split.origins):
        return None
    counts = np.bincount(split.origin, minlength=len(split.origins))
    share = np.array([o.weight for o in split.origins], dtype=np.float64)
    share = share / share[counts > 0].sum()
    log.info("batches: %s", ", ".join(f"{o.name} {share[k]:.0%} ({counts[k]:,} films)"
                                      for k, o in enumerate(split.origins)))  # fmt: skip
    return share[split.origin] / counts[split.origin]


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
        order = EpochSampler(dataset, rank, world_size, cfg.seed, weights=dataset.weights)
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
