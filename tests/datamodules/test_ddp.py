"""Two CPU processes (gloo): disjoint training shards, exactly-once evaluation, exact metrics."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.classification import MulticlassAccuracy

from datamodules import HFImageDataModule

WORLD = 2
EPOCHS = (0, 1)


def make_dm(data_dir: str, cache_dir: str) -> HFImageDataModule:
    # 60 train images -> 49 train / 11 val (odd: uneven eval shards), 20 test; eval batches of 5 so the
    # two ranks get different numbers of validation batches (6 -> 2 batches, 5 -> 1 batch)
    return HFImageDataModule(
        data_dir=data_dir, cache_dir=cache_dir, batch_size=4, eval_batch_size=5, test_batch_size=5,
        val_size=11, binarize="none"
    )


def predict(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A fixed 'model': deterministic per example, right on some and wrong on others."""
    return x.long().sum(dim=1) % num_classes


def accuracy(dm: HFImageDataModule, loader) -> tuple[float, int]:
    metric = MulticlassAccuracy(num_classes=dm.num_classes, average="micro")
    seen = 0
    for x, y in loader:
        metric.update(predict(x, dm.num_classes), y)
        seen += len(y)
    return float(metric.compute()), seen  # compute() syncs the states across ranks


def worker(rank: int, out_dir: str, data_dir: str, cache_dir: str, hf_cache: str) -> None:
    import datasets

    datasets.config.HF_DATASETS_CACHE = Path(hf_cache)
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=WORLD)
    try:
        dm = make_dm(data_dir, cache_dir)
        dm.setup("fit")
        x_train, _ = dm.split_tensors("train")
        result: dict = {"train": {}, "train_batches": {}}
        for epoch in EPOCHS:
            dm.set_epoch(epoch)
            loader = dm.train_dataloader()
            idx, xs = [], []
            for (x, _), batch_idx in zip(loader, loader.sampler, strict=True):
                idx.append(batch_idx)
                xs.append(x)
            idx = torch.cat(idx)
            assert torch.equal(torch.cat(xs), x_train[idx])  # the loader serves what its sampler says
            result["train"][epoch] = idx
            result["train_batches"][epoch] = len(loader)
        for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
            result[f"{split}_idx"] = torch.cat(list(loader.sampler))
            result[f"{split}_batches"] = len(loader)
            result[f"{split}_acc"], result[f"{split}_seen"] = accuracy(dm, loader)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_shards(grey_ds, cache_dir, hf_cache, tmp_path):
    data_dir = str(grey_ds["root"])
    single = make_dm(data_dir, cache_dir)  # also warms both caches for the workers
    single.setup("fit")
    out_dir = tmp_path / "ddp"
    out_dir.mkdir()
    mp.spawn(worker, args=(str(out_dir), data_dir, cache_dir, str(hf_cache)), nprocs=WORLD, join=True)
    res = [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]

    n_train = single.split_sizes["train"]
    for epoch in EPOCHS:
        shards = [r["train"][epoch] for r in res]
        # the same number of batches on each rank; shards disjoint except the one wrap-around pad
        assert res[0]["train_batches"][epoch] == res[1]["train_batches"][epoch]
        assert len(shards[0]) == len(shards[1]) == 25
        union = torch.cat(shards)
        assert set(union.tolist()) == set(range(n_train))
        assert len(union) - len(set(union.tolist())) == 2 * 25 - n_train  # only the training pad repeats
        # rank r holds perm[r::2] of the seed+epoch permutation shared by all ranks
        single.set_epoch(epoch)
        perm = torch.cat(list(single.train_dataloader().sampler))
        assert torch.equal(shards[0][: len(perm[0::2])], perm[0::2])
        assert torch.equal(shards[1][: len(perm[1::2])], perm[1::2])
    assert not torch.equal(res[0]["train"][0], res[0]["train"][1])

    for split in ("val", "test"):
        idx = torch.cat([r[f"{split}_idx"] for r in res])
        n = single.split_sizes[split]
        assert torch.equal(idx.sort().values, torch.arange(n))  # every example exactly once, no padding
        assert sum(r[f"{split}_seen"] for r in res) == n
        # the synced 2-process accuracy equals the 1-process one exactly
        loader = single.val_dataloader() if split == "val" else single.test_dataloader()
        acc1, seen1 = accuracy(single, loader)
        assert seen1 == n
        assert res[0][f"{split}_acc"] == res[1][f"{split}_acc"] == acc1
    assert res[0]["val_batches"] != res[1]["val_batches"]  # uneven eval shards are fine
