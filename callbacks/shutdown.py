"""A graceful SIGTERM stop (``kill``, a scheduler's preemption): a checkpoint at the end of the current
training batch, one message "received SIGTERM: saved checkpoint <path> at step N; resume with --ckpt_path
<path>", and a clean exit (status 0); see docs/ERRORS.md.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightning_modules.lightning_private import is_last_train_batch, mark_checkpoint_saved, set_received_sigterm

__all__ = ["GracefulShutdown", "SIGTERMException"]


# Hand-written on top of Lightning's own SIGTERM handler (which it chains to): Lightning 2.6 stops at the next
# batch but saves nothing, so the steps since the last checkpoint would be lost (reliability/test_crash_safety.py).
class GracefulShutdown(Callback):
    """On SIGTERM: save a checkpoint at the end of the current training batch, print one line, exit 0.

    How it works with Lightning 2.x: when ``fit`` starts, Lightning's ``_SignalConnector`` installs its own
    SIGTERM handler (it sets ``trainer.received_sigterm``; the training loop then raises
    ``SIGTERMException``, a ``SystemExit`` with code 0, after the current batch's ``on_train_batch_end``
    hooks, or at the next batch of a validation loop). This callback wraps that handler at the
    sanity check or ``on_train_start`` (chaining to it, so Lightning's own bookkeeping and DDP launcher handling still
    run) and restores it when training ends. Single process: at the first ``on_train_batch_end`` after the
    signal it saves a checkpoint there (the regular, exactly resumable mid-epoch point), prints the
    message, and lets Lightning's ``SIGTERMException`` end ``fit``; ``sys.exit`` status is 0. If
    Lightning did not see the signal (no handler of its own) it sets ``trainer.should_stop`` instead.
    A signal during an epoch's last batch or the validation after it is held back from Lightning until
    ``on_train_epoch_end``: that validation ends first, then the fit stops at the epoch's end.
    (Stopping at the last batch lost the epoch's validation: the resumed run starts the next epoch.) A signal
    during the fit's last epoch end lets the fit end as it would have. At an epoch's end, or where no batch
    end follows, the checkpoint is saved in ``on_exception``, once every callback has closed the epoch. Nothing
    is saved if no training step was taken since this fit started (no progress to keep, and an older good
    checkpoint is not overwritten).

    Several processes (DDP, any launcher): the handler only records the signal, on whichever rank got it,
    and does not chain to Lightning's. Lightning 2.6's handler runs a ``broadcast`` inside the signal
    handler and forwards the signal to its child ranks, whose handlers broadcast too; those collectives
    pair up with whatever the other rank is running at that moment, and the fit hung or lost its peer
    (tests/coupled/test_cli_sigterm.py). Instead the ranks agree at every ``on_train_batch_end`` (one
    one-element all-reduce: did any rank get a SIGTERM?); then all of them raise Lightning's flag, save
    the same step together and stop there (the callback raises Lightning's ``SIGTERMException`` itself, so
    that no rank enters a validation the others leave). At an epoch's last batch they agree in
    ``on_train_epoch_end`` instead, after the validation. A signal after the fit's last batch (its last
    validation) lets the fit end as it would have, its checkpoints saved; the ranks agree on it in
    ``on_train_end`` and ``received`` then tells the CLI to skip the test after fit. Lightning's handler is
    not put back before teardown: a second signal while a rank still talks to the others stays harmless.

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
        self._distributed = False
        self._epoch_end = False  # in an epoch's last training batch or the validation after it
        self._stop_at_epoch_end = False  # the ranks agreed to stop at this epoch's end
        self._held: tuple | None = None  # a signal held back from Lightning's handler until the epoch's end

    # ---- signal handling ----
    def _handler(self, signum, frame) -> None:
        self._received = True
        if self._distributed:  # no collective inside a signal handler: the ranks agree at the next batch end
            return
        if self._epoch_end:  # Lightning would cut the epoch's validation short: on_train_epoch_end passes it on
            self._held = (signum, frame)
            return
        self._chain(signum, frame)

    def _chain(self, signum, frame) -> None:
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
        self._epoch_end, self._held, self._stop_at_epoch_end = False, None, False

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._distributed = trainer.world_size > 1

    def on_sanity_check_start(self, trainer, pl_module) -> None:  # Lightning's handler is in place by now
        self._install()

    def on_train_start(self, trainer, pl_module) -> None:
        self._start_step = trainer.global_step  # after a resume's restore
        self._install()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._epoch_end = is_last_train_batch(trainer, batch_idx)
        if self._epoch_end and not self._distributed and trainer.received_sigterm and self.saved_path is None:
            set_received_sigterm(trainer, False)  # it came while this batch was fetched: hold it as well
            self._held = ()  # Lightning's handler has run: only its flag is to be raised again

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.saved_path is not None or self._epoch_end:  # the epoch's validation comes first
            return
        if self._distributed:  # every rank is here at the same step: stop together if any rank was signalled
            if not trainer.strategy.reduce_boolean_decision(self._received, all=False):
                return
            self._received = True
            set_received_sigterm(trainer)  # Lightning then raises SIGTERMException on every rank
        elif not (self._received or trainer.received_sigterm):
            return
        self._save(trainer)
        if self._distributed:
            raise SIGTERMException  # here, on every rank: a validation next could end unevenly across ranks
        if not trainer.received_sigterm:  # Lightning did not register its handler: stop by ourselves
            trainer.should_stop = True

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not self._distributed:
            self._restore()
        if not (isinstance(exception, SIGTERMException) or self._received):
            return
        if self.saved_path is None and trainer.global_step <= self._start_step:  # e.g. during RBM pretraining
            if trainer.is_global_zero:
                print("received SIGTERM before the first training step: no checkpoint saved", file=sys.stderr,
                      flush=True)
            return
        if self._distributed and not (self._stop_at_epoch_end and isinstance(exception, SIGTERMException)):
            return  # saved at a batch end, where the ranks agreed; an exception may be one rank's own, and a save
            # here would wait for ranks that are not there (at an epoch's end every rank raised Lightning's here)
        if self.saved_path is None:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end, held = False, self._held
        self._held = None
        if self.saved_path is not None or self._last_epoch(trainer) or trainer.should_stop:  # the fit ends here
            return  # anyway (its last epoch, early stopping): as it would have; `received` skips the test after it
        if self._distributed:  # every rank ends the epoch here, its validation done
            if not trainer.strategy.reduce_boolean_decision(self._received, all=False):
                return
            self._received = True
            set_received_sigterm(trainer)  # Lightning raises SIGTERMException on every rank after this hook
        elif held is not None:
            if held:  # the signal itself: Lightning's handler does its own bookkeeping
                self._chain(*held)
            set_received_sigterm(trainer)  # raised also where Lightning registered no handler
        elif not trainer.received_sigterm:
            return
        self._stop_at_epoch_end = True  # on_exception saves, once every callback has closed the epoch

    @staticmethod
    def _last_epoch(trainer: pl.Trainer) -> bool:
        max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
        if max_epochs is not None and 0 <= max_epochs <= trainer.current_epoch + 1:
            return True
        return max_steps != -1 and trainer.global_step >= max_steps

    def on_train_end(self, trainer, pl_module) -> None:
        if self._distributed:  # every rank ends training here: agree on a signal that came after the last batch
            self._received = trainer.strategy.reduce_boolean_decision(self._received, all=False)
        else:
            self._restore()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore()

    # ---- saving ----
    @staticmethod
    def _target(trainer: pl.Trainer) -> tuple[str, ModelCheckpoint | None]:
        for c in trainer.checkpoint_callbacks:  # a callback that keeps the run's last.ckpt (the CLI has one): it
            if (isinstance(c, ModelCheckpoint) and c.dirpath and c.monitor is None  # is replaced, atomically
                    and c.filename == c.CHECKPOINT_NAME_LAST):
                return os.path.join(c.dirpath, c.CHECKPOINT_NAME_LAST + c.FILE_EXTENSION), c
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
        trainer.save_checkpoint(path, weights_only=False)  # a full, resumable state (and no Lightning notice)
        if cb is not None:
            mark_checkpoint_saved(cb, trainer.global_step)  # no second save of the same step on exception
        self.saved_path = path
        if trainer.is_global_zero:
            print(
                f"received SIGTERM: saved checkpoint {path} at step {trainer.global_step}; "
                f"resume with --ckpt_path {path}",
                file=sys.stderr,
                flush=True,
            )
