"""Each private Lightning attribute the project reads still exists and means what lightning_private.py says.

A Lightning upgrade that renames one fails here, by name, instead of silently changing behaviour (most reads
fall back to a default when the attribute is missing)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules import GenerativeLearner
from lightning_modules import lightning_private as private


def test_the_cli_methods_exist():
    for name in private.CLI_METHODS:
        assert callable(getattr(LightningCLI, name, None)), name
    for name in private.CHECKPOINT_METHODS:
        assert callable(getattr(ModelCheckpoint, name, None)), name


def test_module_trainer_and_loop_attributes_during_fit(tmp_path):
    seen = {}

    class Probe(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            assert hasattr(trainer, "_logger_connector") and hasattr(trainer._logger_connector, "should_update_logs")
            assert hasattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped")
            seen.setdefault("due", []).append(private.step_logs_due(trainer))
            seen.setdefault("step", []).append(private.logged_step(trainer))
            seen["trainer"] = private.attached_trainer(pl_module)

    model = GenerativeLearner(sizes=[6, 4, 2])
    assert private.attached_trainer(model) is None
    loader = DataLoader(TensorDataset(torch.rand(12, 6), torch.arange(12) % 2), batch_size=4)
    trainer = pl.Trainer(max_epochs=1, log_every_n_steps=2, callbacks=[Probe()], logger=pl.loggers.CSVLogger(tmp_path),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, loader)
    assert seen["trainer"] is trainer
    assert seen["step"] == [0, 1, 2]  # Lightning's logging step, counted before the batch's increment
    assert seen["due"] == [False, True, False]  # every 2nd step: log_every_n_steps=2
    fresh = pl.Trainer(logger=False)
    private.set_logged_step(fresh, 17)
    assert private.logged_step(fresh) == 17


def test_checkpoint_and_wandb_logger_attributes(tmp_path):
    cb = ModelCheckpoint(dirpath=tmp_path)
    assert hasattr(cb, "_last_global_step_saved")
    private.mark_checkpoint_saved(cb, 7)
    assert cb._last_global_step_saved == 7
    logger = WandbLogger(project="p", offline=True, save_dir=str(tmp_path))  # no W&B run starts here
    assert private.wandb_project(logger) == "p"
    init = private.wandb_init_kwargs(logger)
    assert isinstance(init, dict) and init["project"] == "p"


def test_idle_step_hooks_are_dropped_and_lightning_skips_them(tmp_path):
    calls = []

    class OneHook(Callback):
        def on_train_batch_end(self, *args):
            calls.append("end")

    cb, ckpt = OneHook(), ModelCheckpoint(dirpath=tmp_path)
    private.drop_idle_step_hooks(cb)
    private.drop_idle_step_hooks(ckpt)
    assert cb.on_before_backward is None and callable(cb.on_train_batch_end)
    assert ckpt.on_train_batch_start is None and callable(ckpt.on_train_batch_end)  # ModelCheckpoint's own runs
    model = GenerativeLearner(sizes=[6, 4, 2])
    loader = DataLoader(TensorDataset(torch.rand(8, 6), torch.arange(8) % 2), batch_size=4)
    pl.Trainer(max_epochs=1, callbacks=[cb], logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(model, loader)  # Lightning skips the None hooks without error
    assert calls == ["end", "end"]


def test_raising_the_sigterm_flag_stops_fit_after_that_batch(tmp_path):
    class StopAtTwo(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                private.set_received_sigterm(trainer)

    model = GenerativeLearner(sizes=[6, 4, 2])
    loader = DataLoader(TensorDataset(torch.rand(24, 6), torch.arange(24) % 2), batch_size=4)
    trainer = pl.Trainer(max_epochs=3, callbacks=[StopAtTwo()], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(SIGTERMException):
        trainer.fit(model, loader)
    assert trainer.received_sigterm and trainer.global_step == 2


def test_lowering_the_sigterm_flag_lets_fit_run_on():
    class RaiseThenLower(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                private.set_received_sigterm(trainer)
                assert trainer.received_sigterm
                private.set_received_sigterm(trainer, False)

    model = GenerativeLearner(sizes=[6, 4, 2])
    loader = DataLoader(TensorDataset(torch.rand(24, 6), torch.arange(24) % 2), batch_size=4)
    trainer = pl.Trainer(max_epochs=2, callbacks=[RaiseThenLower()], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, loader)
    assert not trainer.received_sigterm and trainer.global_step == 12


def test_the_last_training_batch_is_known_before_its_hooks_also_without_a_length():
    class Probe(Callback):
        def __init__(self):
            self.last = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.last.append(private.is_last_train_batch(trainer, batch_idx))

    class Unsized(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([(torch.rand(4, 6), torch.arange(4) % 2) for _ in range(3)])

    for loader in (DataLoader(TensorDataset(torch.rand(12, 6), torch.arange(12) % 2), batch_size=4),
                   DataLoader(Unsized(), batch_size=None)):
        probe = Probe()
        trainer = pl.Trainer(max_epochs=2, callbacks=[probe], logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(GenerativeLearner(sizes=[6, 4, 2]), loader)
        assert probe.last == [False, False, True] * 2
