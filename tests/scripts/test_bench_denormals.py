"""scripts/bench_denormals.py: step times of a checkpoint with denormals kept and flushed (no timed asserts)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules import GenerativeLearner
from lightning_modules.learner import flushing_denormals as flushing
from scripts.bench_denormals import main


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])  # the checkpoint's optimizer state loads into its own kind
def test_it_times_every_arm_from_a_checkpoint_and_restores_the_flag(tmp_path, optimizer):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 12, generator=g).round(), torch.arange(64) % 3
    model = GenerativeLearner(hidden_sizes=[5, 4], input_dim=12, num_classes=3, objective="rws",
                              objective_kwargs={"num_samples": 3}, optimizer=optimizer)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=16))
    ckpt = tmp_path / "late.ckpt"
    trainer.save_checkpoint(ckpt)
    assert flushing()  # the fit turned it on (GenerativeLearner.setup)
    med = main([str(ckpt), "--steps", "3", "--repeats", "1", "--data-dir", str(tmp_path / "none")])
    assert set(med) == {"late, denormals kept", "late, flushed", "fresh net"}
    assert all(v > 0 for v in med.values())
    assert flushing()  # left as the script found it
    torch.set_flush_denormal(False)
    assert not flushing()
