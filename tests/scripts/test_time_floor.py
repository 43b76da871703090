"""scripts/time_floor.py: a run's matrix-product FLOPs, counted part by part, against an exact count."""

from __future__ import annotations

import json

import pytest
import yaml

from scripts import time_floor
from scripts.time_floor import phases, run_flops

SIZES = [6, 5, 4, 3]  # input_dim 6, hidden 5-4, 3 classes
MATMULS = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # multiply-adds of one row through the recognition pass


def _config(**model) -> dict:
    return {"trainer": {"max_epochs": 3}, "data": {"init_args": {"batch_size": 8, "val_size": 6}},
            "model": {"hidden_sizes": SIZES[1:-1], "objective": "discriminative", "objective_kwargs": {},
                      "eval_num_samples": 0, "fitted_proposal_steps": 0, "self_consistency_per_class": 0, **model}}


def _flops(config: dict) -> dict:
    return run_flops(config, SIZES[0], SIZES[-1], train_images=30)


def test_phases_group_the_epochs_before_and_after_a_late_term():
    got = phases({"a_weight": 3.0, "k": 5}, {"a_weight": 2}, 5)
    assert got == [(2, {"a_weight": 0.0, "k": 5}), (3, {"a_weight": 3.0, "k": 5})]
    assert phases({"k": 5}, {}, 4) == [(4, {"k": 5})]


def test_the_discriminative_run_is_counted_exactly():
    """A step: the forward pass (2 B MATMULS), the weight gradients (as many) and the input gradients of every layer
    but the first (the images need none); 3 epochs of ceil(24 / 8) steps; validation: one batch's forward pass."""
    B = 8
    step = 2 * B * (2 * MATMULS + MATMULS - SIZES[0] * SIZES[1])
    got = _flops(_config())
    assert got["train"] == 3 * 3 * step
    assert got["validation"] == 3 * 1 * 2 * B * MATMULS
    assert got["test"] == 0


def test_the_test_part_grows_with_k_and_the_fitted_proposal():
    """Per test image, the likelihood costs a fixed part and one per sample (affine in K); the fitted proposal's
    estimate costs as much again, plus its fitting steps."""
    one, two, three = (_flops(_config(eval_num_samples=k))["test"] for k in (10, 20, 30))
    assert 0 < one < two and three - two == pytest.approx(two - one)
    fitted = _flops(_config(eval_num_samples=10, fitted_proposal_steps=1))["test"]
    more = _flops(_config(eval_num_samples=10, fitted_proposal_steps=3))["test"]
    step = (more - fitted) / 2
    assert step > 0 and fitted == pytest.approx(2 * one + step)


def test_a_late_term_costs_only_its_epochs():
    kwargs = {"num_samples": 2, "sample_consistency_weight": 1.0}
    late = _flops(_config(objective="rws", objective_kwargs=kwargs, objective_start_epochs={
        "sample_consistency_weight": 2}))["train"]
    never = _flops(_config(objective="rws", objective_kwargs={**kwargs, "sample_consistency_weight": 0.0}))["train"]
    always = _flops(_config(objective="rws", objective_kwargs=kwargs))["train"]
    assert never < late < always
    assert late == pytest.approx(never * 2 / 3 + always / 3)


def test_main_prints_the_floor_at_the_rate_and_the_measured_epochs(tmp_path, monkeypatch, capsys):
    config = _config()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "metrics.json").write_text(json.dumps({"epochs": [{"seconds": 10.0}, {"seconds": None},
                                                                  {"seconds": 5.0}]}))
    monkeypatch.setattr(time_floor, "matmul_rate", lambda sizes, rows: 1000.0)
    time_floor.main(["--resolved", str(tmp_path / "config.yaml"), "--input_dim", "6", "--num_classes", "3",
                     "--train_images", "30", "--budget_hours", "1"])
    out = capsys.readouterr().out
    parts = _flops(config)
    assert f"{sum(parts.values()) / 1000 / 3600:6.2f} h" in out.splitlines()[-2]
    assert f"measured epochs: {15 / 3600:.2f} h, {15 / ((parts['train'] + parts['validation']) / 1000):.2f}x" in out


def test_main_wants_a_command_line_or_a_resolved_config_but_not_both(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_config()))
    for argv in ([], ["--resolved", str(tmp_path / "c.yaml"), "fit"]):
        with pytest.raises(SystemExit):
            time_floor.main(argv)
        assert "one of the two" in capsys.readouterr().err
