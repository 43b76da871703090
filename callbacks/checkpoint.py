"""The run's best-model checkpoint: Lightning's ModelCheckpoint, except that a model whose generative terms are
still being switched on (``--model.generative_delay_epochs`` / ``generative_ramp_epochs``, a term of
``objective_start_epochs`` before its epoch) is never the best.

Recognition-first training reaches its best validation accuracy before the generative terms start, so picking
by ``val/acc`` alone would test a model that was never trained as a generator (reports/GENERATIVE.md, run F).
The class keeps Lightning's name: its state in a checkpoint is keyed by the class name, so checkpoints of
either class resume with the other.
"""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import Callback
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint

from lightning_modules.files import atomic_copy
from lightning_modules.lightning_private import mark_checkpoint_saved

__all__ = ["KeepBeforeLateTerms", "ModelCheckpoint"]


class ModelCheckpoint(LightningModelCheckpoint):
    """``ModelCheckpoint`` that picks no best model while its model's ``generative_schedule_done`` is False (with
    a monitor). Where it keeps ``last.ckpt`` itself (``save_last=True``) that is still written meanwhile: a late
    term can leave most of a run unscheduled. (``coupled fit`` writes last.ckpt with a callback of its own.)"""

    def _skips(self, pl_module) -> bool:
        return self.monitor is not None and not getattr(pl_module, "generative_schedule_done", True)

    def _save_topk_checkpoint(self, trainer, monitor_candidates) -> None:  # every hook's best-model save
        # a monitor never logged goes to Lightning, which names it (a typo fails at the first validation, not at
        # the late term's epoch, hours in) and saves nothing
        if self._skips(trainer.lightning_module) and self.monitor in monitor_candidates:
            if self.save_last is True:  # Lightning writes last.ckpt in a step it saved in
                mark_checkpoint_saved(self, trainer.global_step)
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)


class KeepBeforeLateTerms(Callback):
    """Keeps ``before_epoch<N>.ckpt``, last.ckpt as it is when epoch N starts, N the first epoch of
    ``--model.objective_start_epochs``: the run until then does not depend on the late terms' settings (they draw
    nothing while off), so a variant of the late phase resumes from it (``--ckpt_path``, with the variant's
    config) and is the variant's run from the start, bit for bit, at the cost of the late epochs alone."""

    PREFIX, SUFFIX = "before_epoch", ".ckpt"  # the kept file is PREFIX + N + SUFFIX

    @classmethod
    def file_name(cls, epoch: int | str) -> str:
        return f"{cls.PREFIX}{epoch}{cls.SUFFIX}"

    @classmethod
    def epoch_of(cls, name: str) -> int | None:
        """N where ``name`` is a kept ``before_epoch<N>.ckpt`` (a run branched from it), else None."""
        stem = name.removeprefix(cls.PREFIX).removesuffix(cls.SUFFIX)
        return int(stem) if stem.isdecimal() and name == cls.file_name(stem) else None

    def __init__(self, last: LightningModelCheckpoint) -> None:
        self.last = last  # the callback that writes last.ckpt (its folder is known once the fit starts)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        starts = [s for s in (pl_module.hparams.get("objective_start_epochs") or {}).values() if s > 0]
        if not starts or trainer.current_epoch != min(starts) or not trainer.is_global_zero or not self.last.dirpath:
            return
        folder = Path(self.last.dirpath)
        last = folder / f"{self.last.CHECKPOINT_NAME_LAST}{self.last.FILE_EXTENSION}"
        keep = folder / self.file_name(min(starts))
        if last.is_file() and not keep.exists():  # not again: a run resumed inside epoch N has moved on
            atomic_copy(last, keep)
