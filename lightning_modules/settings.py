"""The checks of GenerativeLearner's settings: the first bad one is one ConfigError line naming the flag and a fix.

Run at construction, so a bad value in a config fails before any data is read or any weight is trained.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError, is_int
from .fitted import PROPOSAL_INITS
from .objectives import OBJECTIVES, check_objective_kwargs


def check_settings(hp: Mapping[str, Any], sizes: Sequence[int]) -> None:
    """`hp`: the learner's hyperparameters; `sizes`: the layer sizes they resolve to."""
    objective = hp["objective"]
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    check_objective_kwargs(objective, dict(hp["objective_kwargs"] or {}))  # before the starts that name them
    if not hp["lr"] > 0:
        raise ConfigError(f"lr must be > 0, got {hp['lr']}")
    step, gamma = hp["lr_step_size"], hp["lr_gamma"]
    if hp["lr_schedule"] == "step" and not (isinstance(step, int) and step >= 1 and gamma > 0):
        raise ConfigError(f"the step schedule needs model.lr_step_size >= 1 (epochs) and model.lr_gamma > 0, got "
                          f"{step!r} and {gamma!r}")
    delay, ramp = hp["generative_delay_epochs"], hp["generative_ramp_epochs"]
    if not (delay >= 0 and ramp >= 0):
        raise ConfigError(f"model.generative_delay_epochs and model.generative_ramp_epochs must be >= 0, got "
                          f"{delay!r} and {ramp!r}")
    for name, start in (hp.get("objective_start_epochs") or {}).items():
        # a term's own weight (at 0 the term is off), not recognition's or a multiplier of the p-term's factors
        term = name.endswith("_weight") and name not in ("recognition_weight", "top_weight", "hidden_weight")
        if not (term and is_int(start) and start >= 0):
            raise ConfigError(f"model.objective_start_epochs.{name}: {start!r}; give the weight of a generative term "
                              f"that model.objective_kwargs sets and the epoch (an integer >= 0) it starts at")
        if name not in (hp["objective_kwargs"] or {}):
            raise ConfigError(f"model.objective_start_epochs.{name}: {start!r} starts a term that "
                              f"model.objective_kwargs does not set: add {name} to it, or drop the start "
                              f"(--model.objective_start_epochs null drops them all)")
    epochs, cd_steps = hp["rbm_pretrain_epochs"], hp["rbm_cd_steps"]
    if not (is_int(epochs) and epochs >= 0 and is_int(cd_steps) and cd_steps >= 1):
        raise ConfigError(f"model.rbm_pretrain_epochs must be an integer >= 0 (epochs per hidden layer) and "
                          f"model.rbm_cd_steps an integer >= 1, got {epochs!r} and {cd_steps!r}")
    if epochs and len(sizes) < 3:
        raise ConfigError(f"model.rbm_pretrain_epochs pretrains hidden layers, and sizes {list(sizes)} have none; "
                          f"add model.hidden_sizes or set model.rbm_pretrain_epochs 0")
    if hp["weight_decay"] < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {hp['weight_decay']}")
    if hp["eval_num_samples"] < 1 or hp["self_consistency_per_class"] < 0 or hp["fitted_proposal_steps"] < 0:
        raise ConfigError("eval_num_samples must be >= 1, self_consistency_per_class and "
                          "fitted_proposal_steps >= 0")
    if hp["fitted_proposal_init"] not in PROPOSAL_INITS:
        raise ConfigError(f"model.fitted_proposal_init must be one of {', '.join(PROPOSAL_INITS)}, "
                          f"got {hp['fitted_proposal_init']!r}")
    if hp["compile"] and "generator" in inspect.signature(OBJECTIVES[objective]).parameters:
        raise ConfigError(
            f"model.compile supports the deterministic objectives, not {objective!r}: its samples come from a "
            f"torch.Generator, which torch.compile cannot trace; drop model.compile"
        )

