"""The progress bar: sparse redraws while training, one per test batch (the test batches are the slow ones)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks.progress import EvalProgressBar
from lightning_modules import GenerativeLearner


class Recorder(EvalProgressBar):
    def __init__(self):
        super().__init__(refresh_rate=20)
        self.test_positions: list[int] = []

    def on_test_batch_end(self, *args, **kwargs):
        super().on_test_batch_end(*args, **kwargs)
        self.test_positions.append(self.test_progress_bar.n)


def test_test_bar_advances_after_every_batch():
    x, y = torch.rand(50, 6).round(), torch.arange(50) % 2
    model = GenerativeLearner(sizes=[6, 4, 2], eval_num_samples=3, self_consistency_per_class=0)
    bar = Recorder()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
                         callbacks=[bar])
    trainer.test(model, DataLoader(TensorDataset(x, y), batch_size=10), verbose=False)
    assert bar.test_positions == [1, 2, 3, 4, 5]  # with refresh_rate 20, TQDMProgressBar would show only the end
