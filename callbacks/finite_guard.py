"""Stop training at the first NaN/Inf in any part of the training loss, before a bad state is saved.

:class:`FiniteLossGuard` raises :class:`~lightning_modules.errors.NonFiniteLossError` ("non-finite loss at step
1234 (epoch 3, batch 17): generation=nan (loss=nan); training stopped, last good checkpoint kept:
runs/x/last.ckpt") and refuses every later save of non-finite weights; see docs/ERRORS.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from lightning_modules.errors import ConfigError, NonFiniteLossError
from lightning_modules.lightning_private import logged_step

__all__ = ["FiniteLossGuard", "NonFiniteLossError"]


def _last_good_checkpoint(trainer: pl.Trainer) -> str | None:
    """The newest checkpoint file of this run that exists on disk (last.ckpt first, then the best)."""
    for cb in trainer.checkpoint_callbacks:
        for attr in ("last_model_path", "best_model_path"):
            path = getattr(cb, attr, "") or ""
            if path and os.path.isfile(path):
                return path
    return None


def _fmt(v: torch.Tensor) -> str:
    if v.numel() == 1:
        x = float(v.detach().float().cpu())
        return (
            "nan"
            if math.isnan(x)
            else ("inf" if x == math.inf else ("-inf" if x == -math.inf else f"{x:.4g}"))
        )
    return "non-finite"


# Hand-written: Lightning's `detect_anomaly` slows every step, and EarlyStopping(check_finite=True) only
# looks at the monitored metric after validation, after a bad step's checkpoint may have been written.
class FiniteLossGuard(Callback):
    """Stop at the first non-finite loss part and never write a checkpoint of non-finite weights.

    After each training batch (every `check_every_n_steps`-th; each check is one device sync, so on a GPU
    a larger value saves a little time) the batch's outputs (``{"loss", <parts>}`` as the learner's
    ``training_step`` returns them) are checked. On NaN/Inf it raises :class:`NonFiniteLossError` naming the
    step, epoch, batch and the non-finite part(s) and the last good checkpoint, after turning off
    ``save_on_exception`` of every ``ModelCheckpoint`` so that Lightning's exception handling does not
    save the diverged state. The optimizer step of the bad batch has already run, but its weights are
    never saved: this callback runs before ``ModelCheckpoint`` (Lightning always orders checkpoint
    callbacks last), and its ``on_save_checkpoint`` refuses any checkpoint whose weights are non-finite
    (which also covers the batches skipped when `check_every_n_steps` > 1).

    With `check_parameters` the weights are also checked after every checked batch (one more pass over
    the parameters).
    """

    def __init__(self, check_every_n_steps: int = 1, check_parameters: bool = False):
        if int(check_every_n_steps) < 1:
            raise ConfigError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.check_every_n_steps = int(check_every_n_steps)
        self.check_parameters = bool(check_parameters)
        self.tripped: str | None = None

    @staticmethod
    def _parts(outputs: Any) -> dict[str, torch.Tensor]:
        if isinstance(outputs, torch.Tensor):
            return {"loss": outputs}
        if isinstance(outputs, Mapping):
            return {
                str(k): v for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
            }
        return {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (logged_step(trainer) % self.check_every_n_steps) != 0:
            return
        parts = self._parts(outputs)
        loss = parts.get("loss")
        # a finite loss (the sum of the parts) implies finite parts: one scalar read in the common case
        if loss is not None and loss.numel() == 1 and math.isfinite(loss.item()):
            parts = {}
        if parts:
            flags = torch.stack([torch.isfinite(v.detach()).all() for v in parts.values()])
            if not bool(flags.all()):
                bad = {k: v for (k, v), ok in zip(parts.items(), flags.tolist(), strict=True) if not ok}
                self._trip(trainer, bad, batch_idx, what="loss")
        if self.check_parameters:
            bad_params = self._non_finite_params(pl_module.named_parameters())
            if bad_params:
                self._trip(trainer, {}, batch_idx, what="parameters", names=bad_params)

    @staticmethod
    def _non_finite_params(named) -> list[str]:
        named = [(n, p) for n, p in named if isinstance(p, torch.Tensor) and p.is_floating_point()]
        if not named:
            return []
        flags = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).tolist()
        return [n for (n, _), ok in zip(named, flags, strict=True) if not ok]

    def _trip(self, trainer, bad: dict, batch_idx: int, what: str, names: list[str] | None = None) -> None:
        for cb in trainer.checkpoint_callbacks:  # Lightning's on_exception must not save the diverged state
            if hasattr(cb, "save_on_exception"):
                cb.save_on_exception = False
        if what == "loss":
            others = [k for k in bad if k != "loss"]
            desc = ", ".join(f"{k}={_fmt(bad[k])}" for k in others) or f"loss={_fmt(bad['loss'])}"
            if others and "loss" in bad:
                desc += f" (loss={_fmt(bad['loss'])})"
        else:
            desc = "parameters " + ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
        good = _last_good_checkpoint(trainer)
        kept = f"last good checkpoint kept: {good}" if good else "no checkpoint had been saved yet"
        self.tripped = (
            f"non-finite {what} at step {logged_step(trainer)} "
            f"(epoch {trainer.current_epoch}, batch {batch_idx}): "
            f"{desc}; training stopped, {kept}"
        )
        raise NonFiniteLossError(self.tripped)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """Last line of defence: no checkpoint with NaN/Inf weights is ever written."""
        if self.tripped:
            raise NonFiniteLossError(f"not saving a checkpoint after the run diverged: {self.tripped}")
        sd = checkpoint.get("state_dict") or {}
        bad = self._non_finite_params(sd.items())
        if bad:
            self.tripped = (
                f"non-finite parameters at step {logged_step(trainer)} (epoch {trainer.current_epoch}): "
                f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}; checkpoint not saved, "
                f"training stopped"
            )
            for cb in trainer.checkpoint_callbacks:
                if hasattr(cb, "save_on_exception"):
                    cb.save_on_exception = False
            raise NonFiniteLossError(self.tripped)

    def state_dict(self) -> dict[str, Any]:
        return {}


