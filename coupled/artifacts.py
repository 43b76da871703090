"""Checkpoints as W&B model artifacts ``model-<run id>`` (aliases ``latest`` and ``best``), plus a local copy.

Lightning refuses ``WandbLogger(offline=True, log_model=True)``, so this callback logs the artifacts
itself: ``run.log_artifact`` uploads them online and stages them for ``wandb sync`` offline. Every
logged version is also recorded in ``<checkpoint dir>/index.json`` with a local copy in
``<checkpoint dir>/versions/vN.ckpt`` (the newest ``keep_local_versions`` and those ``latest``/``best``
point to are kept), so ``--ckpt_path wandb:model-<run id>:latest|best|vN`` resolves offline too.

It also writes the run id into every checkpoint (``checkpoint["wandb_run_id"]``), which the CLI reads to
continue the same W&B run on resume.

Which file: the best checkpoint of ``trainer.checkpoint_callback`` (aliases latest and best) when it is
new, else the newest file any ``ModelCheckpoint`` wrote (alias latest). When: ``ModelCheckpoint`` runs
after every other callback, so a checkpoint written in some hook is
picked up at the next hook this callback sees (the next training batch or epoch, the end of fit).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from lightning_modules.errors import ConfigError
from lightning_modules.lightning_private import wandb_project
from lightning_modules.loggers import wandb_logger

from .index import LocalArtifactIndex
from .resume import RUN_ID_KEY
from .runs import RUN_ID_ENV


def file_signature(path: str | os.PathLike) -> tuple[int, int] | None:
    """(mtime in ns, size) of a file, None if it is not there: a file rewritten or replaced since has another."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


# Hand-written: Lightning refuses WandbLogger(offline=True, log_model=True), and its log_model uploads from rank 0
# with no local index, so an offline run could not resume from `wandb:` (tests/coupled/test_artifacts.py).
class CheckpointArtifacts(pl.Callback):
    """Log each new checkpoint as a version of the ``model-<run id>`` artifact; see the module doc.

    Args:
        log_model: log to W&B (when a WandbLogger is attached); the local index is kept either way.
        keep_local_versions: how many of the newest versions keep a local copy (None: all).
        run_id: the run id stored in checkpoints; default the W&B run's id, else ``$COUPLED_RUN_ID``.
    """

    def __init__(self, log_model: bool = True, keep_local_versions: int | None = 3, run_id: str | None = None):
        if keep_local_versions is not None and keep_local_versions < 0:
            raise ConfigError(f"artifacts.keep_local_versions must be >= 0 or null (keep all), "
                              f"got {keep_local_versions}")
        self.log_model = log_model
        self.keep_local_versions = keep_local_versions
        self.run_id = run_id
        self._pending = False
        self._since = 0
        self._saves: list[dict[str, int]] = []  # (epoch, step) of each save since the last flush, in order
        self._seen: dict[str, tuple[int, int] | None] = {}
        self.logged: list[dict[str, Any]] = []  # what this process logged: version, aliases, file

    def resolve_run_id(self, trainer: pl.Trainer) -> str | None:
        if self.run_id:
            return self.run_id
        logger = wandb_logger(trainer.loggers)
        if logger is not None and logger.version:
            return str(logger.version)
        return os.environ.get(RUN_ID_ENV) or None

    # ---- hooks ----
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        run_id = self.resolve_run_id(trainer)
        if run_id:
            checkpoint[RUN_ID_KEY] = run_id
        self._saves.append({"epoch": int(checkpoint.get("epoch", trainer.current_epoch)),
                            "step": int(checkpoint.get("global_step", trainer.global_step))})
        if not self._pending:
            self._pending = True
            self._since = time.time_ns() - 2 * 10**9  # slack for file systems with coarse mtimes

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._flush(trainer)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._flush(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._flush(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._flush(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._flush(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._flush(trainer)

    # ---- logging ----
    def _flush(self, trainer: pl.Trainer) -> None:
        if not self._pending:
            return
        self._pending = False
        if not trainer.is_global_zero:
            self._saves = []
            return
        cb = trainer.checkpoint_callback  # the first ModelCheckpoint: the one that tracks the best
        if cb is None or not getattr(cb, "dirpath", None):
            return
        best = getattr(cb, "best_model_path", "") or ""
        files = [best] + [
            getattr(c, attr, "") or ""
            for c in trainer.checkpoint_callbacks
            for attr in ("last_model_path", "best_model_path")
        ]
        # new: written since the save began (a best.ckpt of an earlier session of a resumed run is not)
        changed = {
            p: sig
            for p in dict.fromkeys(files)
            if p and (sig := file_signature(p)) is not None and sig != self._seen.get(p) and sig[0] >= self._since
        }
        if not changed:
            return
        self._seen.update(changed)
        saves, self._saves = self._saves or [{"epoch": trainer.current_epoch, "step": trainer.global_step}], []
        newest = max(changed, key=lambda p: changed[p])
        if best in changed and (newest == best or saves[0]["step"] == saves[-1]["step"]):  # one state
            self.log_checkpoint(trainer, best, ["latest", "best"], saves[-1])
            return
        if best in changed:  # e.g. a SIGTERM save after the epoch's best: two states, both kept
            self.log_checkpoint(trainer, best, ["best"], saves[0])
        self.log_checkpoint(trainer, newest, ["latest"], saves[-1])

    def log_checkpoint(self, trainer: pl.Trainer, path: str, aliases: list[str], saved_at: dict[str, int]) -> None:
        cb = trainer.checkpoint_callback
        run_id = self.resolve_run_id(trainer) or "local"
        logger = wandb_logger(trainer.loggers)
        project = wandb_project(logger) if logger is not None else None
        score = getattr(cb, "best_model_score", None)
        meta = {
            **saved_at,
            "monitor": getattr(cb, "monitor", None),
            "best_score": None if score is None else float(score),
            "filename": Path(path).name,
        }
        index = LocalArtifactIndex(cb.dirpath)
        version = index.add(path, aliases, run_id=run_id, project=project, keep=self.keep_local_versions, **meta)
        self.logged.append({"version": version, "aliases": list(aliases), "file": path})
        if logger is not None and self.log_model:
            import wandb

            run = logger.experiment
            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=meta)
            artifact.add_file(path, name="model.ckpt")
            run.log_artifact(artifact, aliases=aliases)
