"""The run's best-model checkpoint: Lightning's ModelCheckpoint, except that a model whose generative terms are
still being switched on (``--model.generative_delay_epochs`` / ``generative_ramp_epochs``, a term of
``objective_start_epochs`` before its epoch) is never the best.

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
    a monitor). Where it keeps ``last.ckpt`` itself (``save_last=True``) that is still written meanwhile: a late
    term can leave most of a run unscheduled. (``coupled fit`` writes last.ckpt with a callback of its own.)"""

    def _skips(self, pl_module) -> bool:
        return self.monitor is not None and not getattr(pl_module, "generative_schedule_done", True)

    def _save_topk_checkpoint(self, trainer, monitor_candidates) -> None:  # every hook's best-model save
        if self._skips(trainer.lightning_module):
            if self.save_last is True:  # Lightning writes last.ckpt in a step it saved in
                mark_checkpoint_saved(self, trainer.global_step)
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)
