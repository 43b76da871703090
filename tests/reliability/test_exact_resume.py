"""Item 1: on CPU with deterministic=True, 4 epochs straight == 2 epochs + resume to 4, bit for bit; and so
does a resume from a mid-epoch checkpoint. The real HFImageDataModule serves the data (dynamic
binarization: fresh draws per batch), for both the deterministic symmetric objective and wake-sleep (which
samples hidden states every step)."""

from __future__ import annotations

import pytest

from tests.reliability import _train
from tests.reliability.conftest import EPOCHS, assert_bitwise_equal

OBJECTIVES = ["symmetric", "wake_sleep"]
# GenerativeLearner.validation_step calls the objective without a generator, so wake-sleep's validation
# samples come from torch's global RNG, which no checkpoint holds: its val/* metrics after a resume differ
# (training, train/* metrics, weights and optimizer state are exact)


def assert_same_training(trainer, model, ref, where=""):
    assert_bitwise_equal(model.state_dict(), ref["state_dict"], f"{where}parameters")
    assert_bitwise_equal(trainer.optimizers[0].state_dict(), ref["optimizer"], f"{where}optimizer")
    assert trainer.global_step == ref["global_step"]


def part(epochs: dict, prefix: str) -> dict:
    """Each epoch's metrics whose names start with `prefix` ("train/" or "val/")."""
    return {e: {k: v for k, v in m.items() if k.startswith(prefix)} for e, m in epochs.items()}


@pytest.fixture(scope="module")
def two_plus_two(tmp_path_factory, data_root):
    """``two_plus_two(objective)``: fit 2 epochs, then resume from last.ckpt to EPOCHS (once per objective)."""
    cache: dict[str, tuple] = {}

    def get(objective: str) -> tuple:
        if objective not in cache:
            root = str(tmp_path_factory.mktemp(f"two_plus_two_{objective}"))
            _, _, rec1, ckpt = _train.run(root, 2, data_root, objective=objective, every_n_steps=None)
            trainer, model, rec2, _ = _train.run(
                root, EPOCHS, data_root, resume=ckpt.last_model_path, objective=objective, every_n_steps=None
            )
            cache[objective] = trainer, model, rec1, rec2
        return cache[objective]

    return get


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_two_epochs_then_resume_to_four_is_bitwise_identical(two_plus_two, references, objective):
    ref = references(objective)
    trainer, model, rec1, rec2 = two_plus_two(objective)
    assert sorted(rec1.epochs) == [0, 1] and sorted(rec2.epochs) == [2, 3]
    assert_same_training(trainer, model, ref)
    # the same logged metrics: every step's loss parts and every epoch's train metrics (val: next test)
    assert {**rec1.steps, **rec2.steps} == ref["steps"]
    epochs = {**rec1.epochs, **rec2.epochs}
    assert part(epochs, "train/") == part(ref["epochs"], "train/")
    assert "train/recognition_epoch" in ref["epochs"][3]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_validation_metrics_after_a_resume_are_identical(two_plus_two, references, objective):
    _, _, rec1, rec2 = two_plus_two(objective)
    ref = references(objective)["epochs"]
    assert "val/acc" in ref[3] and "val/loss" in ref[3]
    assert part({**rec1.epochs, **rec2.epochs}, "val/") == part(ref, "val/")


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_resume_from_a_mid_epoch_checkpoint_is_bitwise_identical(tmp_path, data_root, references, objective):
    ref = references(objective)
    # a full run that keeps a checkpoint every 4 steps: steps 8 and 16 are batch 2 of epoch 1 and batch 4
    # of epoch 2 (6 batches per epoch); checkpointing does not change the run itself
    trainer, model, rec, _ = _train.run(
        str(tmp_path / "full"), EPOCHS, data_root, objective=objective, every_n_steps=4, keep_all=True
    )
    assert_same_training(trainer, model, ref, "checkpointed run: ")
    assert rec.steps == ref["steps"] and rec.epochs == ref["epochs"]
    for step, epoch in ((8, 1), (16, 2)):
        mid = tmp_path / "full" / "ckpt" / f"epoch={epoch}-step={step}.ckpt"
        trainer, model, rec2, _ = _train.run(
            str(tmp_path / f"from{step}"), EPOCHS, data_root, resume=str(mid), objective=objective,
            every_n_steps=None,
        )
        assert min(rec2.steps) == step + 1 and max(rec2.steps) == EPOCHS * 6
        assert_same_training(trainer, model, ref, f"resumed from step {step}: ")
        assert rec2.steps == {s: v for s, v in ref["steps"].items() if s > step}
        # every epoch from the resumed one on logs exactly the same metrics: the running epoch means are
        # checkpointed with the model (GenerativeLearner.on_save_checkpoint)
        for e in range(epoch, EPOCHS):
            for prefix in ("train/", "val/"):
                assert part(rec2.epochs, prefix)[e] == part(ref["epochs"], prefix)[e], (e, prefix)


def test_stopping_mid_epoch_and_resuming_is_bitwise_identical(tmp_path, data_root, reference):
    # stop after 9 of 24 steps (batch 3 of epoch 1), checkpointing every step, then resume from last.ckpt
    _, _, rec1, ckpt = _train.run(str(tmp_path), EPOCHS, data_root, max_steps=9)
    assert max(rec1.steps) == 9
    trainer, model, rec2, _ = _train.run(str(tmp_path), EPOCHS, data_root, resume=ckpt.last_model_path)
    assert min(rec2.steps) == 10
    assert_same_training(trainer, model, reference)
    assert {**rec1.steps, **rec2.steps} == reference["steps"]
    for e in (2, 3):
        assert rec2.epochs[e] == reference["epochs"][e]
        assert "val/acc" in rec2.epochs[e]
