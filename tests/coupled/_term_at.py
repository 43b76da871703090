"""A callback for subprocess tests: SIGTERM to this process at one point of an epoch, on one rank: the signal a
scheduler's `kill` sends, at a step the test chooses instead of one a polling loop happens to reach.

Passed to `coupled fit` as ``--trainer.callbacks+='{"class_path": "tests.coupled._term_at.TermAt", ...}'``."""

from __future__ import annotations

import os
import signal

from pytorch_lightning.callbacks import Callback


class TermAt(Callback):
    """``where``: "last_batch" (the start of the epoch's last training batch), "validation" (its first
    validation batch) or "batch" (the start of training batch ``batch``, mid-epoch)."""

    def __init__(self, epoch: int = 1, where: str = "last_batch", rank: int = 0, batch: int = 2):
        self.epoch, self.where, self.rank, self.batch, self.sent = epoch, where, rank, batch, False

    def _send(self, trainer) -> None:
        if not self.sent and trainer.global_rank == self.rank and trainer.current_epoch == self.epoch:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.where == "last_batch" and batch_idx + 1 == trainer.num_training_batches \
                or self.where == "batch" and batch_idx == self.batch:
            self._send(trainer)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.where == "validation" and not trainer.sanity_checking:
            self._send(trainer)
