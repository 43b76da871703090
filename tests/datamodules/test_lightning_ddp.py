"""Lightning ``ddp_spawn`` on 2 CPU processes: evaluation metrics equal the 1-process ones exactly.

Slow (spawning Lightning workers on a 2-core machine): run with ``pytest -m slow``.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torchmetrics.classification import MulticlassAccuracy

from datamodules import HFImageDataModule
from datamodules.sampling import ShardBatchSampler


class FixedModel(pl.LightningModule):
    """Integer 'predictions' from the pixels (exact in any batch layout); counts examples per rank."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        assert isinstance(self.trainer.val_dataloaders.sampler, ShardBatchSampler)  # not replaced
        pred = (x * 255).round().long().sum(dim=1) % self.num_classes
        self.val_acc.update(pred, y)
        self.log("val_acc", self.val_acc, on_epoch=True)
        n = float(len(y))
        self.log("seen", n, reduce_fx="sum", sync_dist=True, on_epoch=True, on_step=False, batch_size=1)


def run(grey_ds, cache_dir, devices: int) -> dict:
    dm = HFImageDataModule(
        data_dir=str(grey_ds["root"]), cache_dir=cache_dir, batch_size=4, eval_batch_size=5, test_batch_size=5,
        val_size=11
    )
    model = FixedModel(dm.num_classes)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    (metrics,) = trainer.validate(model, datamodule=dm, verbose=False)
    return metrics


@pytest.mark.slow
def test_ddp_spawn_validation_equals_single_process(grey_ds, cache_dir):
    one = run(grey_ds, cache_dir, devices=1)
    two = run(grey_ds, cache_dir, devices=2)
    assert one["seen"] == 11.0 and two["seen"] == 11.0  # every validation example exactly once
    assert two["val_acc"] == one["val_acc"]
