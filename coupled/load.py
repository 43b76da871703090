"""``coupled.load(ref)``: a trained model from a checkpoint path or a ``wandb:`` reference, for notebooks and
scripts (``coupled sample`` uses it too)."""

from __future__ import annotations

import os
from typing import Any

from lightning_modules.errors import CheckpointError
from lightning_modules.learner import GenerativeLearner

from .resume import SPECIAL_CKPT_PATHS, load_checkpoint, resolve_ckpt_path
from .runs import wandb_online
from .trainer import DEFAULT_PROJECT


def load(ref: str | os.PathLike, runs_dir: str | os.PathLike = "runs", map_location: Any = "cpu"
         ) -> GenerativeLearner:
    """The model of a checkpoint path or a ``wandb:[[ENTITY/]PROJECT/]model-<run id>[:alias]`` reference
    (downloaded online, the local copy under `runs_dir` offline), read with ``weights_only=True`` after the
    checks of ``load_checkpoint_safely``; in eval mode on `map_location`."""
    path = resolve_ckpt_path(str(ref), runs_dir=runs_dir, online=wandb_online(), default_project=DEFAULT_PROJECT)
    if path in SPECIAL_CKPT_PATHS:
        raise CheckpointError(f"{ref!r} names a checkpoint only inside a Trainer; give a path or a wandb: "
                              f"reference")
    return GenerativeLearner.from_checkpoint(load_checkpoint(path), path=str(path)).to(map_location)
