"""Item 5 (and 3's "a failed run never overwrites a good checkpoint"): NaN/Inf stops training in one
line naming the step and the loss part, and the last good checkpoint stays as it was."""

from __future__ import annotations

import hashlib
import os
import pathlib

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from callbacks.finite_guard import FiniteLossGuard
from coupled.checkpoint_io import load_checkpoint_safely
from lightning_modules.errors import NonFiniteLossError
from tests.reliability import _train


def sha(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


class HashBeforeStep(Callback):
    """Records last.ckpt's hash right before training step `step` runs."""

    def __init__(self, path: pathlib.Path, step: int):
        self.path, self.step, self.hash = path, step, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self.hash = sha(self.path)


@pytest.mark.parametrize("save_on_exception", [False, True])
def test_nan_stops_with_step_and_part_and_keeps_the_last_good_checkpoint(tmp_path, data_root, save_on_exception):
    last = tmp_path / "ckpt" / "last.ckpt"
    probe = HashBeforeStep(last, step=8)
    _train.pl.seed_everything(0)
    model = _train.CheckedLearner(sizes=_train.SIZES, lr=0.05, nan_at_step=8)  # batch 2 of epoch 1
    trainer, _, _ = _train.make_trainer(str(tmp_path), 4, extra=[probe], save_on_exception=save_on_exception)
    with pytest.raises(NonFiniteLossError) as e:
        trainer.fit(model, datamodule=_train.datamodule(data_root))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == (
        f"non-finite loss at step 8 (epoch 1, batch 2): generation=nan (loss=nan); training stopped, "
        f"last good checkpoint kept: {last}"
    )
    assert probe.hash is not None and sha(last) == probe.hash  # not rewritten after the bad step
    assert sorted(os.listdir(last.parent)) == ["epoch=1-step=8.ckpt", "last.ckpt"]
    ckpt = load_checkpoint_safely(last)
    assert ckpt["global_step"] == 8
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_a_resumed_run_that_diverges_at_once_leaves_the_checkpoint_it_resumed_from(tmp_path, data_root):
    _, _, _, ckpt = _train.run(str(tmp_path), 2, data_root)
    last = pathlib.Path(ckpt.last_model_path)
    before = sha(last)
    with pytest.raises(NonFiniteLossError, match=r"at step 12 \(epoch 2, batch 0\): generation=nan"):
        _train.run(str(tmp_path), 4, data_root, resume=str(last), nan_at_step=12)
    assert sha(last) == before
    assert load_checkpoint_safely(last)["global_step"] == 12


def test_inf_in_a_part_is_named(tmp_path, data_root):
    _train.pl.seed_everything(0)
    model = _train.CheckedLearner(sizes=_train.SIZES, objective_kwargs={"generation_weight": float("inf")})
    trainer, _, _ = _train.make_trainer(str(tmp_path), 1)
    with pytest.raises(NonFiniteLossError) as e:
        trainer.fit(model, datamodule=_train.datamodule(data_root))
    assert str(e.value).startswith("non-finite loss at step 0 (epoch 0, batch 0): loss=inf; training stopped")
    assert "no checkpoint had been saved yet" in str(e.value)
    assert not (tmp_path / "ckpt").exists() or os.listdir(tmp_path / "ckpt") == []


def test_no_checkpoint_with_non_finite_weights_is_ever_written(tmp_path, data_root):
    """Even with the loss check thinned out, on_save_checkpoint refuses NaN weights."""

    class PoisonWeights(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 3:
                with torch.no_grad():
                    pl_module.net.W[0][0, 0] = float("nan")

    _train.pl.seed_everything(0)
    model = _train.CheckedLearner(sizes=_train.SIZES)
    trainer, _, _ = _train.make_trainer(str(tmp_path), 1, extra=[PoisonWeights()], guard=False)
    trainer.callbacks.insert(0, FiniteLossGuard(check_every_n_steps=1000))
    last = tmp_path / "ckpt" / "last.ckpt"
    with pytest.raises(NonFiniteLossError, match=r"non-finite parameters at step 2 .*net\.W\.0.*not saved"):
        trainer.fit(model, datamodule=_train.datamodule(data_root))
    assert load_checkpoint_safely(last)["global_step"] == 2


def test_guard_options_are_checked():
    with pytest.raises(ValueError, match="check_every_n_steps"):
        FiniteLossGuard(check_every_n_steps=0)
