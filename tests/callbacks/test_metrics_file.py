"""metrics.json: one row per epoch (validation and training means together), the test metrics at the end."""

from __future__ import annotations

import json

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks.metrics_file import MetricsFile
from lightning_modules import GenerativeLearner


def test_rows_per_epoch_then_test_metrics(tmp_path):
    x, y = torch.rand(64, 12), torch.arange(64) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    cb = MetricsFile(tmp_path / "metrics.json")
    trainer = pl.Trainer(max_epochs=3, callbacks=[cb], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    model = GenerativeLearner(sizes=[12, 6, 3], eval_num_samples=2, self_consistency_per_class=4)
    trainer.fit(model, loader, loader)
    trainer.test(model, loader, verbose=False)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["epoch"] for e in data["epochs"]] == [0, 1, 2]
    assert all(e["seconds"] > 0 and "val/acc" in e and "train/loss_epoch" in e for e in data["epochs"])
    assert data["test"]["test/acc"] == float(trainer.callback_metrics["test/acc"])


def test_restoring_an_earlier_checkpoint_keeps_the_later_epochs():
    cb = MetricsFile("unused.json")
    cb.epochs = [{"epoch": 0, "val/acc": 0.5}, {"epoch": 1, "val/acc": 0.6}]
    cb.load_state_dict({"epochs": [{"epoch": 0, "val/acc": 0.5}]})  # e.g. testing the best (epoch 0) checkpoint
    assert [e["epoch"] for e in cb.epochs] == [0, 1]
    fresh = MetricsFile("unused.json")
    fresh.load_state_dict(cb.state_dict())  # a resumed run starts with the curves of its earlier sessions
    assert fresh.epochs == cb.epochs
