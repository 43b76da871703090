"""The real MNIST / Fashion-MNIST parquet mirrors (skipped when the mirror is absent)."""

from __future__ import annotations

import time

import pytest
import torch

import datamodules.images as images_mod
from datamodules import FashionMNISTDataModule, MNISTDataModule
from tests.datamodules.helpers import mirror


def test_mnist_mirror_sizes_and_fast_cache_hit(cache_dir, monkeypatch):
    path = mirror("mnist")
    dm = MNISTDataModule(data_dir=str(path), cache_dir=cache_dir)
    assert dm.input_dim == 784 and dm.num_classes == 10 and dm.image_shape == (1, 28, 28)
    assert dm.split_sizes == {"train": 55000, "val": 5000, "test": 10000}
    dm.setup("fit")
    x, y = dm.split_tensors("train")
    assert x.dtype == torch.uint8 and int(x.max()) == 255 and sorted(y.unique().tolist()) == list(range(10))
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (128, 784) and yb.shape == (128,)

    def boom(*args, **kwargs):
        raise AssertionError("decoded again despite a warm cache")

    monkeypatch.setattr(images_mod, "decode_split", boom)
    start, cpu = time.perf_counter(), time.process_time()
    again = MNISTDataModule(data_dir=str(path), cache_dir=cache_dir)
    again.setup("fit")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    # CPU time of this process, so that other jobs on a shared machine do not make it flaky
    assert cpu < 1.0, f"warm load took {cpu:.2f}s of CPU ({elapsed:.2f}s wall)"
    assert torch.equal(again.split_tensors("test")[0], dm.split_tensors("test")[0])


@pytest.mark.slow
def test_fashion_mnist_mirror_via_env(cache_dir, monkeypatch):
    path = mirror("fashion_mnist")
    monkeypatch.setenv("COUPLED_DATA_DIR", str(path.parent))  # $COUPLED_DATA_DIR/fashion_mnist
    dm = FashionMNISTDataModule(cache_dir=cache_dir)
    assert dm.input_dim == 784 and dm.num_classes == 10
    assert dm.class_names[:2] == ["T - shirt / top", "Trouser"] and len(dm.class_names) == 10
    assert dm.split_sizes == {"train": 55000, "val": 5000, "test": 10000}
