"""Whole-batch loading: a sampler that yields index tensors and a dataset that gathers a batch in one op.

``DataLoader(TensorBatchDataset(x, y), batch_size=None, sampler=ShardBatchSampler(...),
collate_fn=identity)`` yields ``(x[idx], y[idx])`` per batch: no per-sample ``__getitem__``, no collate.

:class:`ShardBatchSampler` subclasses ``DistributedSampler`` only so that Lightning (with its default
``use_distributed_sampler=True``) recognises it as already distributed and leaves it alone; it does its
own sharding:

* training (``shuffle=True``): each epoch a permutation from ``torch.Generator().manual_seed(seed + epoch)``,
  identical on every rank; rank ``r`` takes ``perm[r::world]``. So that all ranks get the same number of
  batches, the permutation is padded by wrapping around (``drop_last=False``) or truncated
  (``drop_last=True``) to a multiple of ``world``.
* evaluation (``shuffle=False``): rank ``r`` takes the ``r``-th contiguous chunk of ``arange(n)``
  (``tensor_split``): every example exactly once across ranks, no padding; chunk sizes differ by at most 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler


def identity(batch):
    """``collate_fn`` for whole-batch datasets (module level so it pickles)."""
    return batch


class TensorBatchDataset(Dataset):
    """``dataset[idx_tensor] -> (x[idx], y[idx])`` in one gather (``index_select``) per tensor."""

    def __init__(self, x: Tensor, y: Tensor):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, idx):
        if isinstance(idx, Tensor) and idx.dim() == 1:
            # index_select is much faster than advanced indexing for uint8 rows
            return self.x.index_select(0, idx), self.y.index_select(0, idx)
        return self.x[idx], self.y[idx]


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The training order of an epoch: the same on every rank and for a resumed run."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + int(epoch)))


class ShardBatchSampler(DistributedSampler):
    """Yields int64 index tensors (one per batch) for this rank's shard; see the module docstring."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        epoch_fn: Callable[[], int | None] | None = None,
    ):
        # DistributedSampler.__init__ is deliberately not called: it wants a dataset and may query
        # torch.distributed; the attributes Lightning/torch look at are set here instead.
        if n < 0 or batch_size < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"bad sampler arguments: n={n} batch_size={batch_size} rank={rank}/{num_replicas}"
            )
        self.n = int(n)
        self.dataset = range(self.n)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.epoch_fn = epoch_fn
        if self.shuffle:
            if self.drop_last:
                self.num_samples = self.n // self.num_replicas
            else:
                self.num_samples = math.ceil(self.n / self.num_replicas)
        else:
            self.num_samples = len(range(self.rank, self.n, self.num_replicas))  # == tensor_split chunk size
        self.total_size = self.num_samples * self.num_replicas if self.shuffle else self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def current_epoch(self) -> int:
        if self.epoch_fn is not None:
            epoch = self.epoch_fn()
            if epoch is not None:
                return int(epoch)
        return self.epoch

    def indices(self, epoch: int | None = None) -> Tensor:
        """All indices of this rank for ``epoch`` (default: the current one), in serving order."""
        if not self.shuffle:
            return torch.arange(self.n).tensor_split(self.num_replicas)[self.rank]
        perm = epoch_permutation(self.n, self.seed, self.current_epoch() if epoch is None else epoch)
        if self.total_size > self.n:  # pad by wrapping around so that every rank has num_samples
            reps = math.ceil(self.total_size / max(self.n, 1))
            perm = perm.repeat(reps)
        perm = perm[: self.total_size]
        return perm[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        if self.shuffle and self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        idx = self.indices()
        if idx.numel() == 0:  # more ranks than evaluation examples
            return iter(())
        batches = idx.split(self.batch_size)
        if self.shuffle and self.drop_last and batches and batches[-1].numel() < self.batch_size:
            batches = batches[:-1]
        return iter(batches)
