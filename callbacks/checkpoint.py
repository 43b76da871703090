"""The run's best-model checkpoint: Lightning's ModelCheckpoint, except that a model whose generative terms are
still being switched on (``--model.generative_delay_epochs`` / ``generative_ramp_epochs``) is never the best.

Recognition-first training reaches its best validation accuracy before the generative terms start, so picking
by ``val/acc`` alone would test a model that was never trained as a generator (reports/GENERATIVE.md, run F).
The class keeps Lightning's name: its state in a checkpoint is keyed by the class name, so checkpoints of
either class resume with the other.
"""

from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(LightningModelCheckpoint):
    """``ModelCheckpoint`` that saves nothing while its model's ``generative_schedule_done`` is False (with a
    monitor; a plain periodic checkpoint saves as usual). Each hook Lightning saves from is guarded."""

    def _skips(self, pl_module) -> bool:
        return self.monitor is not None and not getattr(pl_module, "generative_schedule_done", True)

    def on_train_batch_end(self, trainer, pl_module, *args, **kwargs) -> None:
        if not self._skips(pl_module):
            super().on_train_batch_end(trainer, pl_module, *args, **kwargs)

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # where it saves when validating once an epoch
        if not self._skips(pl_module):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._skips(pl_module):
            super().on_validation_end(trainer, pl_module)
