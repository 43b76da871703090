"""The run's best-model checkpoint: Lightning's ModelCheckpoint, except that a model whose generative terms are
still being switched on (``--model.generative_delay_epochs`` / ``generative_ramp_epochs``) is never the best.

Recognition-first training reaches its best validation accuracy before the generative terms start, so picking
by ``val/acc`` alone would test a model that was never trained as a generator (reports/GENERATIVE.md, run F).
The class keeps Lightning's name: its state in a checkpoint is keyed by the class name, so checkpoints of
either class resume with the other.
"""

from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint

from lightning_modules.lightning_private import mark_checkpoint_saved

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(LightningModelCheckpoint):
    """``ModelCheckpoint`` that picks no best model while its model's ``generative_schedule_done`` is False (with
    a monitor). ``last.ckpt`` is written as usual meanwhile: a late term can leave most of a run unscheduled,
    and a crash there must not lose it."""

    def _skips(self, pl_module) -> bool:
        return self.monitor is not None and not getattr(pl_module, "generative_schedule_done", True)

    def _save_topk_checkpoint(self, trainer, monitor_candidates) -> None:  # every hook's best-model save
        if self._skips(trainer.lightning_module):
            mark_checkpoint_saved(self, trainer.global_step)  # Lightning writes last.ckpt in a step it saved in
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)
