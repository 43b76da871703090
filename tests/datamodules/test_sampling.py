"""ShardBatchSampler / TensorBatchDataset without Lightning or torch.distributed."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from datamodules.sampling import (
    ResumableLoader,
    ShardBatchSampler,
    TensorBatchDataset,
    epoch_permutation,
    identity,
)


def all_batches(sampler):
    return list(iter(sampler))


@pytest.mark.parametrize("n, world, bs", [(50, 2, 8), (51, 2, 8), (7, 3, 2), (10, 4, 3), (3, 4, 1)])
def test_train_shards_disjoint_cover_and_equal_length(n, world, bs):
    samplers = [
        ShardBatchSampler(n, bs, shuffle=True, seed=7, num_replicas=world, rank=r) for r in range(world)
    ]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        per_rank = [all_batches(s) for s in samplers]
        # same number of batches on every rank, and len() agrees
        assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(samplers[0])
        shards = [torch.cat(b) for b in per_rank]
        perm = epoch_permutation(n, 7, epoch)
        # interleaving the shards gives back the (wrapped) permutation: disjoint shards covering it
        total = max(len(s) for s in shards) * world
        wrapped = perm.repeat(-(-total // n))[:total]
        for r, shard in enumerate(shards):
            assert torch.equal(shard, wrapped[r::world])
        covered = torch.cat(shards)
        assert set(covered.tolist()) == set(range(n))
        if n % world == 0:
            assert len(covered) == n  # no padding needed: disjoint


def test_train_drop_last_truncates():
    s = [ShardBatchSampler(11, 2, shuffle=True, num_replicas=2, rank=r, drop_last=True) for r in range(2)]
    got = [all_batches(x) for x in s]
    assert [len(g) for g in got] == [2, 2] == [len(x) for x in s]
    assert all(b.numel() == 2 for g in got for b in g)
    flat = torch.cat([torch.cat(g) for g in got])
    assert len(set(flat.tolist())) == len(flat)  # truncation never duplicates


@pytest.mark.parametrize("n, world, bs", [(11, 2, 5), (20, 3, 4), (2, 3, 4), (1000, 2, 1024)])
def test_eval_every_example_exactly_once(n, world, bs):
    samplers = [ShardBatchSampler(n, bs, shuffle=False, num_replicas=world, rank=r) for r in range(world)]
    shards = []
    for s in samplers:
        batches = all_batches(s)
        assert len(batches) == len(s)
        shards.append(torch.cat(batches) if batches else torch.empty(0, dtype=torch.long))
    assert torch.equal(torch.cat(shards), torch.arange(n))  # contiguous, in order, no duplicates
    s0 = samplers[0]
    s0.set_epoch(5)
    assert torch.equal(torch.cat(all_batches(s0)), shards[0])  # evaluation order ignores the epoch


def test_epoch_fn_overrides_set_epoch():
    epoch = {"e": 3}
    s = ShardBatchSampler(20, 20, shuffle=True, seed=1, epoch_fn=lambda: epoch["e"])
    s.set_epoch(0)
    assert torch.equal(next(iter(s)), epoch_permutation(20, 1, 3))
    epoch["e"] = 4
    assert torch.equal(next(iter(s)), epoch_permutation(20, 1, 4))


def test_is_a_distributed_sampler_so_lightning_keeps_it():
    # Lightning only injects its own DistributedSampler when the loader's sampler is not one already
    assert isinstance(ShardBatchSampler(4, 2, shuffle=True), DistributedSampler)


def test_loader_gathers_whole_batches():
    x = torch.arange(40, dtype=torch.uint8).view(10, 4)
    y = torch.arange(10)
    sampler = ShardBatchSampler(10, 4, shuffle=True, seed=0)
    loader = DataLoader(TensorBatchDataset(x, y), batch_size=None, sampler=sampler, collate_fn=identity)
    got = list(loader)
    assert all(isinstance(b, tuple) and len(b) == 2 for b in got)
    idx = torch.cat(all_batches(sampler))
    assert torch.equal(torch.cat([b[0] for b in got]), x[idx])
    assert torch.equal(torch.cat([b[1] for b in got]), y[idx])
    assert got[0][0].dtype == torch.uint8 and got[0][1].dtype == torch.int64


def test_resumable_loader_state_per_rank_and_progress_fn():
    x, y = torch.arange(46, dtype=torch.uint8).view(23, 2), torch.arange(23)
    epoch = {"e": 4}

    def loader(progress_fn=None):
        sampler = ShardBatchSampler(23, 3, shuffle=True, seed=2, num_replicas=2, rank=1, epoch_fn=lambda: epoch["e"])
        return ResumableLoader(TensorBatchDataset(x, y), sampler, progress_fn=progress_fn)

    full = [b[1] for b in loader()]  # rank 1's 12 examples of epoch 4 in batches of 3
    assert len(full) == 4
    first = loader()
    it = iter(first)
    next(it), next(it)
    assert first.state_dict() == {"epoch": 4, "batches_done": 2, "num_batches": 4}
    again = loader()
    again.load_state_dict(first.state_dict())
    epoch["e"] = 0  # ignored by the restored iteration, used by the next ones
    assert [b[1].tolist() for b in again] == [b.tolist() for b in full[2:]]
    assert torch.equal(torch.cat([b[1] for b in again]), y[again.sampler.indices(0)])
    # a progress_fn (the data module passes the Trainer's) wins over the loader's own count
    assert loader(lambda: (7, 1)).state_dict() == {"epoch": 7, "batches_done": 1, "num_batches": 4}
    assert loader(lambda: None).state_dict() == {"epoch": 0, "batches_done": 0, "num_batches": 4}
