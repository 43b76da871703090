"""Item 1: on CPU with deterministic=True, 4 epochs straight == 2 epochs + resume to 4, bit for bit."""

from __future__ import annotations

from tests.reliability import _train
from tests.reliability.conftest import EPOCHS, assert_bitwise_equal


def _resume(root, first_kwargs):
    first_trainer, _, rec1, ckpt = _train.run(str(root), **first_kwargs)
    last = ckpt.last_model_path
    trainer, model, rec2, _ = _train.run(str(root), EPOCHS, resume=last)
    return trainer, model, rec1, rec2


def test_two_epochs_then_resume_to_four_is_bitwise_identical(tmp_path, reference):
    trainer, model, rec1, rec2 = _resume(tmp_path, {"max_epochs": 2})
    assert sorted(rec1.epochs) == [0, 1] and sorted(rec2.epochs) == [2, 3]
    assert_bitwise_equal(model.state_dict(), reference["state_dict"], "parameters")
    assert_bitwise_equal(trainer.optimizers[0].state_dict(), reference["optimizer"], "optimizer")
    assert trainer.global_step == reference["global_step"]
    # the same logged metrics: every step's loss parts and every epoch's train/val metrics
    assert {**rec1.steps, **rec2.steps} == reference["steps"]
    assert {**rec1.epochs, **rec2.epochs} == reference["epochs"]
    assert "val/acc" in reference["epochs"][3] and "train/generation_epoch" in reference["epochs"][3]


def test_resume_from_a_mid_epoch_checkpoint_is_bitwise_identical(tmp_path, reference):
    # stop after 9 of 24 steps: batch 3 of epoch 1 (6 batches per epoch)
    trainer, model, rec1, rec2 = _resume(tmp_path, {"max_epochs": EPOCHS, "max_steps": 9})
    assert max(rec1.steps) == 9 and min(rec2.steps) == 10
    assert_bitwise_equal(model.state_dict(), reference["state_dict"], "parameters")
    assert_bitwise_equal(trainer.optimizers[0].state_dict(), reference["optimizer"], "optimizer")
    assert {**rec1.steps, **rec2.steps} == reference["steps"]
    # the epochs after the resumed one log exactly the same metrics; (Lightning does not checkpoint the
    # running epoch means, so the resumed epoch's train/*_epoch average only its batches after the resume)
    for e in (2, 3):
        assert rec2.epochs[e] == reference["epochs"][e]
