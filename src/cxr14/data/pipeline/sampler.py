"""The order in which training sees its images: seeded per epoch, sharded over processes, resumable mid-epoch.

It is torch's DistributedSampler (epoch e shuffles with seed + e; process r takes every world-th index from r),
used for one process too: then one process with batch B sees, step by step, exactly the images that W
processes with batch B / W see together, which is what makes a torchrun run comparable with a single one.
`skip` drops the first indices of an epoch, for a run resumed from a checkpoint written mid-epoch.
With `weights` (mixed datasets given shares of the batches), an epoch is as many draws, with replacement, of
images in proportion to their weights (torch's WeightedRandomSampler, seeded and sharded the same way).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way through (after `skip` of this process's indices)."""

    def __init__(self, dataset: Sized, rank: int, world_size: int, seed: int, shuffle: bool = True,
                 weights: np.ndarray | None = None) -> None:  # fmt: skip
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
        self.skip = 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def __iter__(self) -> Iterator[int]:
        if self.weights is None:
            return itertools.islice(super().__iter__(), self.skip, None)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g).tolist()
        return itertools.islice(drawn[self.rank : self.total_size : self.num_replicas], self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip
