"""Whole-batch loading: a sampler that yields index tensors and a dataset that gathers a batch in one op.

``DataLoader(TensorBatchDataset(x, y), batch_size=None, sampler=ShardBatchSampler(...),
collate_fn=identity)`` yields ``(x[idx], y[idx])`` per batch: no per-sample ``__getitem__``, no collate.

:class:`ShardBatchSampler` subclasses ``DistributedSampler`` only so that Lightning (with its default
``use_distributed_sampler=True``) recognises it as already distributed and leaves it alone; it does its
own sharding:

* training (``shuffle=True``): each epoch a permutation from the ``shuffle`` stream of (seed, epoch),
  identical on every rank; rank ``r`` takes ``perm[r::world]``. So that all ranks get the same number of
  batches, the permutation is padded by wrapping around (``drop_last=False``) or truncated
  (``drop_last=True``) to a multiple of ``world``.
* evaluation (``shuffle=False``): rank ``r`` takes the ``r``-th contiguous chunk of ``arange(n)``
  (``tensor_split``): every example exactly once across ranks, no padding; chunk sizes differ by at most 1.

:class:`ResumableLoader` is the training loader: a DataLoader with ``state_dict``/``load_state_dict``, so
that Lightning checkpoints where the epoch stands and a mid-epoch resume serves exactly the batches that
the interrupted run had not trained on (Lightning 2.x does not fast-forward a plain map-style loader: it
would replay the epoch's order from its first batch).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightning_modules.seeds import stream_generator


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
    return torch.randperm(n, generator=stream_generator(seed, "shuffle", epoch))


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
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip) for the next iteration
        self._served = (0, 0)  # (epoch, batches served) of the latest iteration
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

    def resume(self, epoch: int, skip: int) -> None:
        """Make the next iteration serve ``epoch`` without its first ``skip`` batches (after a restore)."""
        self._resume = (int(epoch), int(skip))

    def progress(self) -> tuple[int, int]:
        """``(epoch, batches served)`` of the latest iteration (counted as the loader hands them out)."""
        return self._served

    def __iter__(self) -> Iterator[Tensor]:
        if self._resume is not None:
            (epoch, skip), self._resume = self._resume, None
        else:
            epoch, skip = self.current_epoch(), 0
        idx = self.indices(epoch)
        self._served = (epoch, skip)
        if idx.numel() == 0:  # more ranks than evaluation examples
            return iter(())
        batches = idx.split(self.batch_size)
        if self.shuffle and self.drop_last and batches and batches[-1].numel() < self.batch_size:
            batches = batches[:-1]
        return self._serve(epoch, skip, batches[skip:])

    def _serve(self, epoch: int, done: int, batches) -> Iterator[Tensor]:
        for batch in batches:
            done += 1
            self._served = (epoch, done)
            yield batch


class ResumableLoader(DataLoader):
    """The training DataLoader over a :class:`ShardBatchSampler`, with a state that Lightning checkpoints.

    ``state_dict()`` is ``{"epoch", "batches_done", "num_batches"}``: from ``progress_fn()`` when it returns
    ``(epoch, batches done)`` (the data module reads the Trainer's progress: the loader itself runs a batch
    ahead of training because Lightning prefetches), else from the batches this loader handed out.
    ``load_state_dict`` makes the next iteration serve the rest of that epoch; a finished epoch resumes at
    the next one. Only this rank's batches are counted, so a resume needs the same number of batches per
    epoch (same data, batch size and world size); otherwise it warns and starts the epoch over.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: ShardBatchSampler,
        progress_fn: Callable[[], tuple[int, int] | None] | None = None,
    ):
        super().__init__(dataset, batch_size=None, sampler=sampler, collate_fn=identity, num_workers=0)
        self.progress_fn = progress_fn

    def __iter__(self) -> Iterator:
        # what DataLoader's single-process iterator does with batch_size=None and an identity collate, without
        # its per-batch bookkeeping (a tenth of the data epoch on a CPU); the sampler starts at once, as there
        return map(self.dataset.__getitem__, iter(self.sampler))

    def state_dict(self) -> dict[str, int]:
        progress = self.progress_fn() if self.progress_fn is not None else None
        epoch, done = progress if progress is not None else self.sampler.progress()
        return {"epoch": int(epoch), "batches_done": int(done), "num_batches": len(self.sampler)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        epoch, done = int(state_dict["epoch"]), int(state_dict["batches_done"])
        num_batches = int(state_dict.get("num_batches", len(self.sampler)))
        if done >= num_batches:  # the epoch was finished
            epoch, done = epoch + 1, 0
        elif done and num_batches != len(self.sampler):
            warnings.warn(
                f"the checkpoint stopped after {done} of {num_batches} training batches of epoch {epoch}, but "
                f"an epoch now has {len(self.sampler)} batches per process (other data, batch size or number "
                f"of processes): epoch {epoch} starts over from its first batch",
                stacklevel=2,
            )
            done = 0
        self.sampler.resume(epoch, done)
