"""Self-consistency samples do not depend on the number of ranks; the module logs it with val/acc."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules import GenerativeLearner
from lightning_modules.self_consistency import score_samples_sharded


def _by_label_then_logits(logits, labels):
    order = torch.argsort(labels * 1e6 + logits[:, 0].double(), stable=True)
    return logits[order], labels[order]


def test_sharded_samples_are_the_same_for_any_world_size():
    torch.manual_seed(0)
    net = GenerativeLearner(sizes=[16, 8, 3]).net
    one = score_samples_sharded(net, 100, 0, 1, torch.device("cpu"), seed=3, chunk=32)
    assert one[0].shape == (300, 3) and torch.equal(one[1].bincount(), torch.tensor([100, 100, 100]))
    for world in (2, 3):
        parts = [score_samples_sharded(net, 100, r, world, torch.device("cpu"), seed=3, chunk=32)
                 for r in range(world)]
        assert sum(p[1].numel() for p in parts) == 300  # every sample once: no duplicates, none missing
        merged = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        a, b = _by_label_then_logits(*one), _by_label_then_logits(*merged)
        assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


def test_validation_logs_accuracy_and_self_consistency(tmp_path):
    x = torch.rand(60, 16)
    y = torch.arange(60) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    model = GenerativeLearner(sizes=[16, 8, 3], self_consistency_per_class=20, lr=1e-9)  # weights ~ unchanged
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(model, loader, loader)
    metrics = trainer.callback_metrics
    assert "val/recognition_acc" not in metrics  # one validation accuracy: val/acc
    expected = (model.net.recognize(x).argmax(-1) == y).float().mean()
    assert torch.allclose(metrics["val/acc"], expected)
    logits, labels = score_samples_sharded(model.net, 20, 0, 1, torch.device("cpu"))
    assert torch.allclose(metrics["val/self_consistency"], (logits.argmax(-1) == labels).float().mean())
