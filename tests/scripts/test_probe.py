"""scripts/probe.py: fine-tuned copies of a trained model, one per arm of changed objective options."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules import GenerativeLearner
from scripts.probe import finetune, measure, parse_arm
from tests.lightning_modules.test_learner import blobs as _data


def _learner():
    torch.manual_seed(0)
    return GenerativeLearner(sizes=[12, 8, 6, 3], objective="rws",
                             objective_kwargs={"num_samples": 3, "generation_weight": 0.1, "q_weight": 0.1})


def test_arms_are_parsed_as_yaml_values_and_bad_ones_say_how_to_write_them():
    assert parse_arm("c3:sample_consistency_weight=3,sample_consistency_rows=32") == \
        ("c3", {"sample_consistency_weight": 3, "sample_consistency_rows": 32})
    assert parse_arm("mv:method=mean_variance") == ("mv", {"method": "mean_variance"})
    for bad in ("c3", ":a=1", "c3:a", "c3:=1"):
        with pytest.raises(SystemExit, match="NAME:KEY=VALUE"):
            parse_arm(bad)


def test_a_finetune_trains_a_copy_and_leaves_the_checkpoints_model_alone():
    learner, (x, y) = _learner(), _data()
    before = [p.detach().clone() for p in learner.net.parameters()]
    net = finetune(learner, x, y, {}, epochs=2, lr=1e-2, batch_size=32)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.net.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    # the same seed gives the same copy; a changed option gives another one
    again = finetune(learner, x, y, {}, epochs=2, lr=1e-2, batch_size=32)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters()))
    other = finetune(learner, x, y, {"sample_consistency_weight": 5.0}, epochs=2, lr=1e-2, batch_size=32)
    assert any(not torch.equal(a, b) for a, b in zip(net.parameters(), other.parameters()))


def test_a_changed_option_is_checked_before_training():
    with pytest.raises(Exception, match="has no option"):
        finetune(_learner(), *_data(), {"no_such_weight": 1.0}, epochs=1, lr=1e-3)


def test_the_lever_moves_what_it_asks_for():
    """Fine-tuned on sample consistency alone (the other terms off), the walk down keeps the class more often
    than the control arm's, measured on the same samples."""
    learner, (x, y) = _learner(), _data()
    off = {"generation_weight": 0.0, "q_weight": 0.0, "recognition_weight": 0.0}
    control = finetune(learner, x, y, off, epochs=20, lr=3e-2, batch_size=32)
    lever = finetune(learner, x, y, {**off, "sample_consistency_weight": 1.0}, epochs=20, lr=3e-2, batch_size=32)
    a, b = (measure(n, (x, y), images=8, num_samples=4, per_class=300) for n in (control, lever))
    assert sum(b["walk"]) > sum(a["walk"]) + 0.3, (a["walk"], b["walk"])
    assert 0 <= b["acc"] <= 1 and math.isfinite(b["log p"])
