"""Datasets that hand out uint8 images: the model, normalisation and augmentation live elsewhere.

A sample is `(image uint8 [1, S, S], target float [K] (1, 0 or -1: unknown), index, why-unreadable, note)`. Keeping
pixels uint8 until they reach the device moves a quarter of the bytes of float32 through workers, pinned memory and
PCIe; the unreadable reason lets a corrupt file be skipped and counted instead of killing the epoch; the note is
what a source found plainly wrong with a readable film while decoding it (a colour photograph, say), so that the
check costs no second decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from cxr14.data.films.decode import DECODE_ERRORS, read_gray
from cxr14.errors import UserError


class ImageSource(Protocol):
    """Where pixels come from: PNG files decoded on the fly, or a pre-resized cache."""

    size: int

    def __len__(self) -> int: ...

    def read(self, i: int) -> np.ndarray:
        """uint8 (size, size) pixels of item i; raises one of DECODE_ERRORS if unreadable.

        A source may also offer `read_noted(i) -> (pixels, note)`, the note saying in words what is plainly
        wrong with the film ("" when nothing is); the dataset prefers it.
        """
        ...

    def name(self, i: int) -> str:
        """A human name for item i (its file), for error messages."""
        ...


class FileSource:
    """Decode each image file when asked (PNG, JPEG or DICOM; an NIH PNG of 1024x1024 takes 13-21 ms on one core)."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths = [str(p) for p in paths]  # str, not Path: cheaper to pickle into workers
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> np.ndarray:
        return read_gray(self.paths[i], self.size)

    def name(self, i: int) -> str:
        return self.paths[i]


class ConcatSource:
    """Several sources one after another (mixed datasets: each its own cache or files), as one source. A batch is
    gathered part by part when every part gathers (the caches), else read item by item."""

    def __init__(self, parts: Sequence[ImageSource]) -> None:
        self.parts = list(parts)
        self.size = self.parts[0].size
        self.starts = np.cumsum([0, *(len(p) for p in self.parts)])
        self.gathers_batches = all(getattr(p, "gathers_batches", False) for p in self.parts)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _where(self, i: int) -> tuple[ImageSource, int]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k], i - int(self.starts[k])

    def read(self, i: int) -> np.ndarray:
        part, j = self._where(i)
        return part.read(j)

    def name(self, i: int) -> str:
        part, j = self._where(i)
        return part.name(j)

    def read_batch(self, items: Sequence[int]) -> np.ndarray | None:
        if not self.gathers_batches:
            return None
        items = np.asarray(items, dtype=np.int64)
        part_of = np.searchsorted(self.starts, items, side="right") - 1
        out = np.empty((len(items), self.size, self.size), dtype=np.uint8)
        for k in np.unique(part_of):
            at = np.flatnonzero(part_of == k)
            got = self.parts[k].read_batch((items[at] - self.starts[k]).tolist())  # type: ignore[attr-defined]
            if got is None:
                return None
            out[at] = got
        return out


class XrayDataset(Dataset):
    """Pairs an ImageSource with the [N, K] label matrix of a Split.

    An unreadable image never raises inside a worker (where it would surface as a traceback wrapped
    in another traceback): it comes back flagged, and `report_bad` in the main process either
    stops the run with a clear message or counts the skip, as --on_bad_image says.
    """

    def __init__(self, source: ImageSource, labels: np.ndarray, skip_bad: bool,
                 weights: np.ndarray | None = None) -> None:  # fmt: skip
        if len(source) != len(labels):
            raise ValueError(f"{len(source)} images but {len(labels)} label rows")
        self.source = source
        self.weights = weights  # per image, for training's sampler (mixed datasets with shares); None: uniform
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def checks_films(self) -> bool:
        """Whether the films are a user's (predict, the web page): their source notes what is plainly wrong with
        one, and the inference pass asks whether each is upright. A dataset's films are trusted as they are."""
        return getattr(self.source, "read_noted", None) is not None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, str, str]:
        read_noted = getattr(self.source, "read_noted", None)
        try:
            pixels, note = read_noted(i) if read_noted is not None else (self.source.read(i), "")
        except DECODE_ERRORS as exc:
            size = self.source.size
            zeros = torch.zeros(1, size, size, dtype=torch.uint8)
            return zeros, self.labels[i], i, f"{type(exc).__name__}: {exc}", ""
        return torch.from_numpy(pixels).unsqueeze(0), self.labels[i], i, "", note

    def __getitems__(self, items: list[int]) -> dict | list:
        """A whole batch at once when the source can gather it (the cache), else sample by sample."""
        read_batch = getattr(self.source, "read_batch", None)
        pixels = read_batch(items) if read_batch is not None else None
        if pixels is None:
            return [self[i] for i in items]
        index = torch.as_tensor(items, dtype=torch.long)
        return {"image": torch.from_numpy(pixels).unsqueeze(1), "target": self.labels[index], "index": index,
                "bad": [], "note": [""] * len(items)}  # fmt: skip

    def report_bad(self, bad: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Raise a UserError for the first unreadable image, or (skip mode) return them as (index, reason)."""
        if bad and not self.skip_bad:
            i, why = bad[0]
            raise UserError(
                f"Cannot decode image {self.source.name(i)} ({why}). The file is corrupt or truncated: download "
                f"it again, or pass --on_bad_image skip to leave out unreadable images (they are counted and "
                f"reported)."
            )
        return bad


def collate_skipping_bad(batch: list | dict) -> dict:
    """Stack the readable samples of a batch; list the unreadable ones as (index, reason) in `bad`.

    A dict is a batch that `XrayDataset.__getitems__` gathered whole: nothing left to do.
    """
    if isinstance(batch, dict):
        return batch
    good = [b for b in batch if not b[3]]
    bad = [(b[2], b[3]) for b in batch if b[3]]
    if not good:
        return {"image": torch.empty(0), "target": torch.empty(0), "index": torch.empty(0), "bad": bad, "note": []}
    image, target, index = default_collate([b[:3] for b in good])
    return {"image": image, "target": target, "index": index, "bad": bad, "note": [b[4] for b in good]}
