"""callbacks/checkpoint.py: no best model while the generative terms are being switched on."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from callbacks.checkpoint import KeepBeforeLateTerms, ModelCheckpoint
from lightning_modules import GenerativeLearner


class LastAtEpochStart(pl.Callback):
    """The epoch held by last.ckpt when each epoch starts (None: no last.ckpt yet)."""

    def __init__(self, path):
        self.path, self.seen = path, []

    def on_train_epoch_start(self, trainer, pl_module):
        last = self.path / "last.ckpt"
        self.seen.append(torch.load(last, weights_only=True)["epoch"] if last.exists() else None)


def _fit(tmp_path, *callbacks, **model_kwargs) -> ModelCheckpoint:
    torch.manual_seed(0)
    x, y = torch.rand(64, 6), torch.arange(64) % 2
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    model = GenerativeLearner(sizes=[6, 4, 2], objective="rws", **model_kwargs)
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", mode="min", filename="best-{epoch}", save_top_k=1,
                         save_last=True)
    pl.Trainer(max_epochs=4, callbacks=[cb, *callbacks], logger=False, enable_progress_bar=False,
               enable_model_summary=False, accelerator="cpu").fit(model, loader, loader)
    return cb


def test_the_best_model_is_chosen_only_once_the_generative_terms_are_on(tmp_path):
    # the recognition-only epochs 0-2 (delay 3) are never candidates, whatever their val/loss: epoch 3 is the one
    last = LastAtEpochStart(tmp_path / "scheduled")
    cb = _fit(tmp_path / "scheduled", last, generative_delay_epochs=3)
    assert cb.best_model_path.endswith("best-epoch=3.ckpt"), cb.best_model_path
    assert torch.load(cb.best_model_path, weights_only=True)["epoch"] == 3
    # while no model can be the best, last.ckpt still follows every epoch: a crash there loses one epoch at most
    assert last.seen == [None, 0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "scheduled").iterdir()) == ["best-epoch=3.ckpt", "last.ckpt"]


def test_a_monitor_never_logged_fails_at_the_first_validation_even_before_the_terms_are_on(tmp_path):
    x, y = torch.rand(64, 6), torch.arange(64) % 2
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    model = GenerativeLearner(sizes=[6, 4, 2], objective="rws", generative_delay_epochs=3)
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val/bogus", save_top_k=1)
    trainer = pl.Trainer(max_epochs=4, callbacks=[cb], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    with pytest.raises(MisconfigurationException, match="could not find the monitored key"):
        trainer.fit(model, loader, loader)
    assert trainer.current_epoch == 0


def test_without_a_schedule_it_is_lightnings_model_checkpoint(tmp_path):
    cb = _fit(tmp_path / "plain")
    assert len(cb.best_k_models) == 1 and cb.best_model_path  # chosen among all four validations
    mine = ModelCheckpoint(monitor="val/acc", mode="max")
    assert mine.state_key == LightningModelCheckpoint(monitor="val/acc", mode="max").state_key  # resumes either way


def test_the_checkpoint_kept_before_a_late_term_resumes_as_the_variants_own_run(tmp_path):
    """KeepBeforeLateTerms keeps last.ckpt as the late term's first epoch starts; a variant of the late term
    resumed from it is, bit for bit, the variant's run from the start (the term draws nothing while off)."""
    x, y = torch.rand(64, 6), torch.arange(64) % 2
    loader = DataLoader(TensorDataset(x, y), batch_size=16)

    def fit(weight, root, ckpt_path=None):
        torch.manual_seed(0)
        model = GenerativeLearner(sizes=[6, 4, 2], objective="rws", objective_start_epochs={
            "sample_consistency_weight": 2}, objective_kwargs={"num_samples": 2, "sample_consistency_weight": weight})
        last = LightningModelCheckpoint(dirpath=root, filename="last", monitor=None, enable_version_counter=False)
        pl.Trainer(max_epochs=3, callbacks=[last, KeepBeforeLateTerms(last)], logger=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu").fit(model, loader, loader, ckpt_path=ckpt_path)
        return [p.detach().clone() for p in model.parameters()]

    first = fit(1.0, tmp_path / "a")
    kept = tmp_path / "a" / "before_epoch2.ckpt"
    assert torch.load(kept, weights_only=True)["epoch"] == 1  # the end of epoch 1: the term not yet trained
    variant, branched = fit(5.0, tmp_path / "b"), fit(5.0, tmp_path / "c", ckpt_path=kept)
    assert all(torch.equal(p, q) for p, q in zip(variant, branched))
    assert not all(torch.equal(p, q) for p, q in zip(first, variant))  # the late weight did change the run
    assert not (tmp_path / "b" / "before_epoch3.ckpt").exists() and (tmp_path / "b" / "before_epoch2.ckpt").exists()


def test_the_kept_file_name_reads_back_as_its_epoch():
    """scripts/run_config tells a branched run by this name: it must read back, and nothing else may."""
    assert KeepBeforeLateTerms.epoch_of(KeepBeforeLateTerms.file_name(150)) == 150
    for other in ("last.ckpt", "best.ckpt", "before_epoch.ckpt", "before_epochx.ckpt", "before_epoch3.ckpt.tmp",
                  "v_before_epoch3.ckpt", "before_epoch\u00b2.ckpt"):  # a superscript is a digit int() refuses
        assert KeepBeforeLateTerms.epoch_of(other) is None, other
