"""Every private part of Lightning (and of its W&B logger) this project reads, each with why, in one place.

A Lightning upgrade may rename any of them; ``tests/lightning_modules/test_lightning_private.py`` then fails,
naming the one that moved. Project code reads them only through the functions here. The LightningCLI methods
that :class:`coupled.cli.CoupledCLI` calls or overrides (``_get``, ``_parser``, ``_instantiate_trainer``,
``_parse_ckpt_path``) are listed in ``CLI_METHODS`` and checked the same way.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

#: LightningCLI internals the CLI subclass uses: reading the parsed config, the subcommand's parser (its
#: callback keys), building the Trainer with extra callbacks, and reading a checkpoint's hyperparameters
CLI_METHODS = ("_get", "_parser", "_instantiate_trainer", "_parse_ckpt_path")
# ModelCheckpoint methods a subclass overrides (callbacks/checkpoint.py)
CHECKPOINT_METHODS = ("_save_topk_checkpoint",)

#: the hooks Lightning calls on every callback at every training step
STEP_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
              "on_before_optimizer_step", "on_before_zero_grad")


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The module's Trainer, or None: the public ``module.trainer`` raises when none is attached."""
    return module._trainer


def step_logs_due(trainer: pl.Trainer) -> bool:
    """Will the loggers write this step's values? (Lightning's own test, so skipped ``self.log`` calls are never
    ones a logger would have written.)"""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))


def logged_step(trainer: pl.Trainer) -> int:
    """The step the loggers put on the x axis of train/* curves (Lightning counts it apart from global_step)."""
    step = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", None)
    return int(step) if step is not None else int(trainer.global_step)


def set_logged_step(trainer: pl.Trainer, step: int) -> None:
    """Make a fresh Trainer log at `step` (a test after a DDP fit runs in a new single-device Trainer, whose
    metrics would otherwise land at step 0, before the training curves they follow)."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = int(step)


def mark_checkpoint_saved(callback: Any, step: int) -> None:
    """Tell a ModelCheckpoint that `step` is saved, so that its save on exception does not write it again, and
    that its ``last.ckpt`` is due (Lightning writes it in a step it saved in; callbacks/checkpoint.py)."""
    if hasattr(callback, "_last_global_step_saved"):
        callback._last_global_step_saved = step


def is_last_train_batch(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Is this training batch the epoch's last? Lightning knows it before the batch's hooks run, also for a loader
    without a length (where ``num_training_batches`` is inf)."""
    progress = getattr(trainer.fit_loop.epoch_loop, "batch_progress", None)
    return bool(getattr(progress, "is_last_batch", False)) or batch_idx + 1 >= trainer.num_training_batches


def set_received_sigterm(trainer: pl.Trainer, value: bool = True) -> None:
    """Raise Lightning's SIGTERM flag (a read-only property on the Trainer), so that its loops stop the run
    where they check it, on every rank at once when every rank sets it at the same step; or lower it, so that
    they let an epoch's validation finish first."""
    trainer._signal_connector.received_sigterm = value


def wandb_init_kwargs(logger: Any) -> dict | None:
    """The keyword arguments Lightning's WandbLogger will pass to ``wandb.init`` (read before its first use)."""
    init = getattr(logger, "_wandb_init", None)
    return init if isinstance(init, dict) else None


def wandb_project(logger: Any) -> str | None:
    """The W&B project a WandbLogger logs to, known before its run starts."""
    return getattr(logger, "_project", None)


def drop_idle_step_hooks(callback: Callback) -> None:
    """Skip the per-step hooks a callback does not override.

    Lightning calls every hook of every callback at every step, each under a profiler context and with the
    callback's ``state_key`` (a repr of its settings, for ModelCheckpoint) built for the profiler's label; it
    skips a hook that is not callable. Setting the inherited no-op hooks to None on the instance drops those
    calls; the overridden ones run as before.
    """
    for name in STEP_HOOKS:
        if getattr(type(callback), name) is getattr(Callback, name):
            callback.__dict__[name] = None
