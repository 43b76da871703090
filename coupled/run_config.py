"""Saves the resolved config of a run as ``<run folder>/config.yaml`` and with the W&B run (config + file).

Each session of a run (a resume is one) also keeps its own copy, ``<run folder>/sessions/<N>.yaml``: config.yaml
is the last session's, and what a run trained is every session's (``make reproduce --adopt`` checks them all).
A run made before sessions were kept starts them, when resumed, with its config.yaml as it was (its last session's).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytorch_lightning as pl
import yaml
from pytorch_lightning.cli import SaveConfigCallback

from lightning_modules.files import atomic_copy
from lightning_modules.loggers import wandb_logger

SESSIONS = "sessions"  # <run folder>/sessions/<N>.yaml: the config of the run's N-th session (1 the first)


def _kept(folder: Path) -> dict[int, Path]:
    return {int(p.stem): p for p in (folder / SESSIONS).glob("*.yaml") if re.fullmatch(r"[1-9][0-9]*", p.stem)}


def session_configs(folder: str | Path) -> list[Path]:
    """The config of each session of the run in ``folder``, oldest first; a run made before sessions were kept
    has its config.yaml alone (its last session's)."""
    kept = _kept(Path(folder))
    return [kept[n] for n in sorted(kept)] or [Path(folder) / "config.yaml"]


class RunConfigCallback(SaveConfigCallback):
    """Saves the resolved config as ``<run folder>/config.yaml`` and with the W&B run (config + file)."""

    def __init__(self, parser, config, config_filename: str = "config.yaml", overwrite: bool = True,
                 multifile: bool = False, run_dir: str | None = None):
        super().__init__(parser, config, config_filename, overwrite, multifile, save_to_log_dir=False)
        self.run_dir = run_dir

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        folder = Path(self.run_dir or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.config_filename
        kept = _kept(folder)
        if not kept and path.is_file():  # a run made before sessions were kept: its last session's config first
            atomic_copy(path, folder / SESSIONS / "1.yaml")
            kept = {1: path}
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile)
        atomic_copy(path, folder / SESSIONS / f"{max(kept, default=0) + 1}.yaml")
        logger = wandb_logger(trainer.loggers)
        if logger is not None:
            run = logger.experiment
            dumped = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
            run.config.update({"cli": dumped}, allow_val_change=True)
            # in the run's files, not as config.yaml: W&B keeps its own config.yaml there; a disabled run
            # (WANDB_MODE=disabled) has no files folder
            if getattr(run, "dir", None) and Path(run.dir).is_dir():
                copy = Path(run.dir) / "coupled-config.yaml"
                shutil.copyfile(path, copy)
                run.save(str(copy), base_path=run.dir, policy="now")


