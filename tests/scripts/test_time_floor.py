"""scripts/time_floor.py: a run's matrix-product FLOPs, counted part by part, against an exact count."""

from __future__ import annotations

import json

import pytest
import yaml

from scripts import time_floor
from scripts.time_floor import batches, phases, run_flops, unmodelled

SIZES = [6, 5, 4, 3]  # input_dim 6, hidden 5-4, 3 classes
MATMULS = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # multiply-adds of one row through the recognition pass
# a discriminative step per row: the forward pass, the weight gradients (as many) and the input gradients of every
# layer but the first (the images need none)
STEP_PER_ROW = 2 * (2 * MATMULS + MATMULS - SIZES[0] * SIZES[1])


def _config(data=None, **model) -> dict:
    return {"trainer": {"max_epochs": 3}, "data": {"init_args": {"batch_size": 8, "val_size": 6, **(data or {})}},
            "model": {"hidden_sizes": SIZES[1:-1], "objective": "discriminative", "objective_kwargs": {},
                      "eval_num_samples": 0, "fitted_proposal_steps": 0, "self_consistency_per_class": 0, **model}}


def _flops(config: dict) -> tuple[dict, list]:
    return run_flops(config, SIZES[0], SIZES[-1], train_images=30)


def test_batches_and_phases():
    assert batches(24, 10) == [(2, 10), (1, 4)] and batches(24, 10, drop_last=True) == [(2, 10)]
    assert batches(24, 8) == [(3, 8)]
    got = phases({"a_weight": 3.0, "k": 5}, {"a_weight": 2}, 5)
    assert got == [(2, {"a_weight": 0.0, "k": 5}), (3, {"a_weight": 3.0, "k": 5})]
    assert phases({"k": 5}, {}, 4) == [(4, {"k": 5})]


def test_the_discriminative_run_is_counted_exactly():
    """3 epochs of the 24 training images (30 less 6 for validation), every row a step's worth; validation: the 6
    images' forward pass (one batch: eval_batch_size is at least 1024)."""
    parts, per_epoch = _flops(_config())
    assert parts["train"] == 3 * 24 * STEP_PER_ROW
    assert parts["validation"] == 3 * 6 * 2 * MATMULS
    assert parts["test"] == 0
    assert per_epoch == [24 * STEP_PER_ROW + 6 * 2 * MATMULS] * 3


def test_partial_batches_train_size_and_no_validation():
    assert _flops(_config({"batch_size": 10}))[0]["train"] == 3 * 24 * STEP_PER_ROW  # 10 + 10 + 4 rows
    assert _flops(_config({"batch_size": 10, "drop_last": True}))[0]["train"] == 3 * 20 * STEP_PER_ROW
    assert _flops(_config({"train_size": 16}))[0]["train"] == 3 * 16 * STEP_PER_ROW
    parts, _ = _flops(_config({"val_size": 0}, self_consistency_per_class=2))
    assert parts["validation"] == 0 and parts["train"] == 3 * 30 * STEP_PER_ROW  # no validation, so no samples
    assert _flops(_config({"val_size": 0.2}))[0] == _flops(_config())[0]  # a share of the training images


def test_the_test_part_grows_with_k_and_the_fitted_proposal():
    """Per test image, the likelihood costs a fixed part and one per sample (affine in K); the fitted proposal's
    estimate costs as much again, plus its fitting steps, at the learner's batch whatever the training batch."""
    one, two, three = (_flops(_config(eval_num_samples=k))[0]["test"] for k in (10, 20, 30))
    assert 0 < one < two and three - two == pytest.approx(two - one)
    fitted = _flops(_config(eval_num_samples=10, fitted_proposal_steps=1))[0]["test"]
    more = _flops(_config(eval_num_samples=10, fitted_proposal_steps=3))[0]["test"]
    step = (more - fitted) / 2
    assert step > 0 and fitted == pytest.approx(2 * one + step)
    other_batch = _flops(_config({"batch_size": 4}, eval_num_samples=10, fitted_proposal_steps=1))[0]["test"]
    assert other_batch == fitted
    no_test = {**_config(eval_num_samples=10), "test_after_fit": False}
    assert _flops(no_test)[0]["test"] == 0


def test_a_late_term_costs_only_its_epochs_in_training():
    kwargs = {"num_samples": 2, "sample_consistency_weight": 1.0}
    late, late_epochs = _flops(_config(objective="rws", objective_kwargs=kwargs, objective_start_epochs={
        "sample_consistency_weight": 2}))
    never, _ = _flops(_config(objective="rws", objective_kwargs={**kwargs, "sample_consistency_weight": 0.0}))
    always, _ = _flops(_config(objective="rws", objective_kwargs=kwargs))
    assert never["train"] < late["train"] < always["train"]
    assert late["train"] == pytest.approx(never["train"] * 2 / 3 + always["train"] / 3)
    assert late["validation"] == always["validation"] > never["validation"]  # validation has every term throughout
    assert late_epochs[0] == late_epochs[1] < late_epochs[2]


def test_settings_the_count_does_not_follow_are_named():
    config = _config(generative_delay_epochs=2)
    config["trainer"].update(max_steps=5, precision="32-true")
    assert unmodelled(config) == ["model.generative_delay_epochs 2", "trainer.max_steps 5"]
    assert unmodelled(_config()) == []


def test_main_prints_the_floor_at_the_rate_and_the_measured_epochs(tmp_path, monkeypatch, capsys):
    """The measured epochs (0 and 2; epoch 1 was resumed, untimed) against the floor of those two epochs."""
    config = _config(objective="rws", objective_kwargs={"num_samples": 2, "sample_consistency_weight": 1.0},
                     objective_start_epochs={"sample_consistency_weight": 2})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "metrics.json").write_text(json.dumps({"epochs": [{"epoch": 0, "seconds": 10.0},
                                                                  {"epoch": 1, "seconds": None},
                                                                  {"epoch": 2, "seconds": 5.0}]}))
    monkeypatch.setattr(time_floor, "matmul_rate", lambda sizes, rows: 1000.0)
    time_floor.main(["--resolved", str(tmp_path / "config.yaml"), "--input_dim", "6", "--num_classes", "3",
                     "--train_images", "30", "--budget_hours", "1"])
    out = capsys.readouterr().out
    parts, per_epoch = _flops(config)
    assert f"{sum(parts.values()) / 1000 / 3600:6.2f} h" in out.splitlines()[-2]
    assert f"measured: 2 epochs in {15 / 3600:.2f} h, {15 / ((per_epoch[0] + per_epoch[2]) / 1000):.2f}x" in out


def test_main_refuses_what_it_cannot_count_and_wants_one_config(tmp_path, capsys):
    config = _config()
    config["trainer"]["limit_train_batches"] = 0.5
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="trainer.limit_train_batches 0.5: leave those settings out"):
        time_floor.main(["--resolved", str(tmp_path / "c.yaml")])
    for argv in ([], ["--resolved", str(tmp_path / "c.yaml"), "fit"]):
        with pytest.raises(SystemExit):
            time_floor.main(argv)
        assert "one of the two" in capsys.readouterr().err


def test_steps_are_timed_per_phase_and_project_the_training_hours(tmp_path, monkeypatch, capsys):
    """--steps: timed steps per phase (2 epochs without the late term, 1 with it), and the hours they project:
    each phase's epochs times its steps (30 images less 6 for validation, batches of 8: 3 steps) at its time."""
    config = _config(objective="rws", objective_kwargs={"num_samples": 2, "sample_consistency_weight": 1.0},
                     objective_start_epochs={"sample_consistency_weight": 2})
    timed = time_floor.step_seconds(config, 6, 3, steps=2)
    assert [epochs for epochs, _ in timed] == [2, 1] and all(s > 0 for _, s in timed)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setattr(time_floor, "matmul_rate", lambda sizes, rows: 1000.0)
    monkeypatch.setattr(time_floor, "step_seconds", lambda *a: [(2, 36.0), (1, 72.0)])
    time_floor.main(["--resolved", str(tmp_path / "config.yaml"), "--input_dim", "6", "--num_classes", "3",
                     "--train_images", "30", "--budget_hours", "1", "--steps", "1"])
    out = capsys.readouterr().out
    assert "36000.0 ms  for 2 epochs of 3 steps: 108.0 s an epoch" in out
    assert f"{(2 * 36 + 72) * 3 / 3600:6.2f} h of training steps" in out
