"""Callbacks that keep a long run from being lost: a non-finite-loss guard and a graceful SIGTERM stop.

* :class:`FiniteLossGuard` stops training at the first NaN/Inf in any part of the training loss with
  :class:`NonFiniteLossError` ("non-finite loss at step 1234 (epoch 3, batch 17): generation=nan (loss=nan);
  training stopped, last good checkpoint kept: runs/x/last.ckpt"), before any checkpoint of the bad state
  is written, and refuses every later save of non-finite weights.
* :class:`GracefulShutdown` turns a SIGTERM (``kill``, a scheduler's preemption) into: a checkpoint at
  the end of the current training batch, one message "received SIGTERM: saved checkpoint <path> at
  step N; resume with --ckpt_path <path>", and a clean exit (status 0).

Both go in ``Trainer(callbacks=[...])``; see docs/ERRORS.md for what the CLI prints.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

__all__ = ["FiniteLossGuard", "GracefulShutdown", "NonFiniteLossError", "SIGTERMException"]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or Inf; the message (one line) names the step, the loss part(s) and the
    last good checkpoint. The CLI prints it without a traceback and exits non-zero."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def _last_good_checkpoint(trainer: pl.Trainer) -> str | None:
    """The newest checkpoint file of this run that exists on disk (last.ckpt first, then the best)."""
    for cb in trainer.checkpoint_callbacks:
        for attr in ("last_model_path", "best_model_path"):
            path = getattr(cb, attr, "") or ""
            if path and os.path.isfile(path):
                return path
    return None


def _logged_step(trainer: pl.Trainer) -> int:
    """The step the loggers use for the current training batch (the x axis of train/* curves)."""
    loop = getattr(trainer.fit_loop, "epoch_loop", None)
    step = getattr(loop, "_batches_that_stepped", None)
    return int(step) if step is not None else int(trainer.global_step)


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
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
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
        if (_logged_step(trainer) % self.check_every_n_steps) != 0:
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
            f"non-finite {what} at step {_logged_step(trainer)} "
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
                f"non-finite parameters at step {_logged_step(trainer)} (epoch {trainer.current_epoch}): "
                f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}; checkpoint not saved, "
                f"training stopped"
            )
            for cb in trainer.checkpoint_callbacks:
                if hasattr(cb, "save_on_exception"):
                    cb.save_on_exception = False
            raise NonFiniteLossError(self.tripped)

    def state_dict(self) -> dict[str, Any]:
        return {}


# Hand-written on top of Lightning's own SIGTERM handler (which it chains to): Lightning 2.6 stops at the next
# batch but saves nothing, so the steps since the last checkpoint would be lost (reliability/test_crash_safety.py).
class GracefulShutdown(Callback):
    """On SIGTERM: save a checkpoint at the end of the current training batch, print one line, exit 0.

    How it works with Lightning 2.x: when ``fit`` starts, Lightning's ``_SignalConnector`` installs its own
    SIGTERM handler (it sets ``trainer.received_sigterm``; the training loop then raises
    ``SIGTERMException``, a ``SystemExit`` with code 0, after the current batch's ``on_train_batch_end``
    hooks, or at the next batch of a validation loop). This callback wraps that handler at
    ``on_train_start`` (chaining to it, so Lightning's own bookkeeping and DDP launcher handling still
    run) and restores it when training ends. Single process: at the first ``on_train_batch_end`` after the
    signal it saves a checkpoint there (the regular, exactly resumable mid-epoch point), prints the
    message, and lets Lightning's ``SIGTERMException`` end ``fit``; ``sys.exit`` status is 0. If
    Lightning did not see the signal (no handler of its own) it sets ``trainer.should_stop`` instead.
    If the signal arrives where no batch end follows (during validation, at an epoch's end) or with
    several processes (DDP: Lightning broadcasts the flag so that all ranks raise together), the
    checkpoint is saved in ``on_exception`` instead. Nothing is saved if no training step was taken since
    this fit started (no progress to keep, and an older good checkpoint is not overwritten).

    The checkpoint goes to the ``ModelCheckpoint``'s ``last`` file (as ``save_last`` names it, its
    version counter respected), or ``<default_root_dir>/checkpoints/last.ckpt`` without one; with
    ``AtomicCheckpointIO`` the write is atomic.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False
        self._received = False
        self.saved_path: str | None = None
        self._start_step = 0

    # ---- signal handling ----
    def _handler(self, signum, frame) -> None:
        self._received = True
        prev = self._previous
        if callable(prev):
            prev(signum, frame)

    def _install(self) -> None:
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._handler)
        self._installed = True

    def _restore(self) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == self._handler:
                signal.signal(
                    signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL
                )
        self._installed = False

    @property
    def received(self) -> bool:
        return self._received

    # ---- hooks ----
    def on_fit_start(self, trainer, pl_module) -> None:
        self._received = False
        self.saved_path = None
        self._start_step = trainer.global_step

    def on_train_start(self, trainer, pl_module) -> None:
        self._start_step = trainer.global_step  # after a resume's restore
        self._install()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not (self._received or trainer.received_sigterm) or self.saved_path is not None:
            return
        if trainer.world_size > 1:  # the ranks stop together in on_exception (Lightning syncs the flag)
            return
        self._save(trainer)
        if not trainer.received_sigterm:  # Lightning did not register its handler: stop by ourselves
            trainer.should_stop = True

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()
        if not (isinstance(exception, SIGTERMException) or self._received):
            return
        if self.saved_path is None:
            if trainer.global_step > self._start_step:
                self._save(trainer)
            elif trainer.is_global_zero:
                print(
                    "received SIGTERM before the first training step: no checkpoint saved",
                    file=sys.stderr,
                    flush=True,
                )

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore()

    # ---- saving ----
    @staticmethod
    def _target(trainer: pl.Trainer) -> tuple[str, ModelCheckpoint | None]:
        cb = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
        if cb is not None and cb.dirpath:
            if cb.last_model_path:
                return cb.last_model_path, cb
            metrics = {
                "epoch": torch.tensor(trainer.current_epoch),
                "step": torch.tensor(trainer.global_step),
            }
            path = cb.format_checkpoint_name(metrics, cb.CHECKPOINT_NAME_LAST)
            ver = cb.STARTING_VERSION
            while os.path.exists(path):  # never overwrite another run's last.ckpt
                path = cb.format_checkpoint_name(metrics, cb.CHECKPOINT_NAME_LAST, ver=ver)
                ver += 1
            return path, cb
        base = os.path.join(trainer.default_root_dir, "checkpoints", "last")
        path, ver = base + ".ckpt", 1
        while os.path.exists(path):
            path, ver = f"{base}-v{ver}.ckpt", ver + 1
        return path, None

    def _save(self, trainer: pl.Trainer) -> None:
        path, cb = self._target(trainer)
        if cb is not None:
            cb.last_model_path = path  # recorded in the checkpoint, as ModelCheckpoint itself does
        trainer.save_checkpoint(path)
        if cb is not None and hasattr(cb, "_last_global_step_saved"):
            cb._last_global_step_saved = trainer.global_step  # no second save of the same step on exception
        self.saved_path = path
        if trainer.is_global_zero:
            print(
                f"received SIGTERM: saved checkpoint {path} at step {trainer.global_step}; "
                f"resume with --ckpt_path {path}",
                file=sys.stderr,
                flush=True,
            )
