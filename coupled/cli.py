"""The command line: ``coupled fit|validate|test|predict --config configs/mnist.yaml [--trainer.* ...]``
and ``coupled sample --ckpt_path ...`` (:mod:`coupled.sample`).

A :class:`~pytorch_lightning.cli.LightningCLI` over :class:`GenerativeLearner` and the image DataModules,
with every Trainer flag as Lightning users know it. On top of Lightning's own CLI:

* the model's ``input_dim`` and ``num_classes`` are linked from the DataModule;
* one run id and one run folder ``<runs_dir>/<run id>/`` (checkpoints/, samples/, config.yaml, sessions/, wandb/),
  the run id shared with DDP child processes through the environment (:mod:`coupled.runs`);
* W&B (``WandbLogger``, project ``coupled``) by default, online when an API key is configured or
  ``WANDB_MODE=online``, offline otherwise, never a prompt;
* default callbacks, each with its own flags: ``--checkpoint.*`` (ModelCheckpoint on ``val/acc``),
  ``--sample_grid.*``, ``--sample_quality.*``, ``--artifacts.*``, plus ``<run>/metrics.json``, the loss guard
  and graceful SIGTERM;
* ``--ckpt_path wandb:[[ENTITY/]PROJECT/]model-<run id>[:latest|:best|:vN]`` resolved on every rank,
  and resuming continues the W&B run whose id the checkpoint holds (:mod:`coupled.resume`);
* after ``fit``, ``test`` on the best checkpoint on one device (``--test_after_fit false`` to skip);
* user errors print one line ``coupled: error: ...`` and exit with status 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from callbacks.checkpoint import ModelCheckpoint as BestCheckpoint
from callbacks.metrics_file import MetricsFile
from callbacks.predictions import PredictionWriter
from callbacks.progress import EvalProgressBar
from callbacks.sample_quality import SampleQuality
from callbacks.samples import SampleGrid
from callbacks.shutdown import GracefulShutdown
from datamodules import HFImageDataModule
from lightning_modules.errors import ConfigError, CoupledError
from lightning_modules.learner import GenerativeLearner
from lightning_modules.lightning_private import drop_idle_step_hooks, wandb_init_kwargs

from .arguments import CoupledArgumentParser, parser_kwargs
from .artifacts import CheckpointArtifacts
from .resume import SPECIAL_CKPT_PATHS, CheckpointMeta, checkpoint_meta, resolve_ckpt_path
from .run_config import RunConfigCallback
from .runs import (
    agree_across_nodes,
    check_run_id,
    export_run_id,
    inherited_run_id,
    launcher_run_id,
    local_rank,
    new_run_id,
    run_dir,
    wandb_online,
)
from .trainer import (
    DEFAULT_PROJECT,
    check_cpu_devices,
    check_fit_ckpt_path,
    check_same_data,
    check_seed,
    check_seeds_agree,
    check_val_check_interval,
    last_checkpoint,
    test_after_fit,
    trainer_defaults,
    trainer_error,
)

DEFAULT_RUNS_DIR = "runs"
PROGRESS_REFRESH_STEPS = 20


class CoupledCLI(LightningCLI):
    """LightningCLI with the project's defaults, run folders, W&B resume and test-after-fit."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any):
        self.run_id: str | None = None
        self.checkpoint: CheckpointMeta | None = None  # what the --ckpt_path checkpoint holds besides its weights
        self.run_dir: Path | None = None
        kwargs.setdefault("model_class", GenerativeLearner)
        kwargs.setdefault("datamodule_class", HFImageDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("trainer_defaults", trainer_defaults())
        kwargs.setdefault("save_config_callback", RunConfigCallback)
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("auto_configure_optimizers", False)  # the model has its own optimizer options
        kwargs.setdefault("parser_kwargs", parser_kwargs())
        kwargs.setdefault("parser_class", CoupledArgumentParser)
        super().__init__(args=args, run=run, **kwargs)

    # ---- arguments ----
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--runs_dir", type=str | None, default=None,
            help="Folder of the run folders <runs_dir>/<run id>/ (checkpoints, samples, config, wandb); default: "
                 "--trainer.default_root_dir when given, else runs.",
        )
        parser.add_argument(
            "--test_after_fit", type=bool, default=True,
            help="After fit, test the best checkpoint on one device (fit only).",
        )
        parser.add_argument(
            "--allow_other_data", type=bool, default=False,
            help="fit: continue from a --ckpt_path checkpoint trained on other data (fine-tuning); refused otherwise.",
        )
        parser.add_argument(
            "--untrained", type=bool, default=False,
            help="validate/test/predict the freshly initialised model (otherwise they need --ckpt_path).",
        )
        parser.set_defaults({"data": {"class_path": "datamodules.MNISTDataModule"}})
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(SampleGrid, "sample_grid")
        parser.add_lightning_class_args(SampleQuality, "sample_quality")
        parser.add_lightning_class_args(CheckpointArtifacts, "artifacts")
        parser.link_arguments("data.input_dim", "model.input_dim", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        # kept in the checkpoint, so `coupled sample` can show samples without the data
        parser.link_arguments("data.image_shape", "model.image_shape", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")

    # ---- checkpoint references and the run id: before Lightning reads the checkpoint's hparams ----
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # the error handler may run on a subcommand's parser: the command line is kept on the class
        CoupledArgumentParser.cli_args = [str(a) for a in args] if isinstance(args, (list, tuple)) else None
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        cfg = self.config[subcommand]
        if cfg.get("runs_dir") is None:  # Lightning's convention: a run's files go under default_root_dir
            cfg.runs_dir = cfg.trainer.get("default_root_dir") or DEFAULT_RUNS_DIR
        ref = cfg.get("ckpt_path")
        local = resolve_ckpt_path(
            ref, runs_dir=cfg.runs_dir, online=wandb_online(), default_project=self._wandb_project(cfg),
            rank=local_rank(),
        )
        ckpt_run_id = None
        if local is not None and local not in SPECIAL_CKPT_PATHS and "://" not in local:
            # read safely: a missing or bad file stops here
            self.checkpoint = checkpoint_meta(local)
            ckpt_run_id = self.checkpoint.run_id
        cfg.ckpt_path = local
        if subcommand != "fit":
            self._check_evaluated_weights(subcommand, local, cfg.get("untrained"))
        run_id = (
            self._explicit_wandb_id(cfg)
            or (ckpt_run_id if subcommand == "fit" else None)
            or inherited_run_id()
            or launcher_run_id()
            or new_run_id()
        )
        self.run_id = check_run_id(agree_across_nodes(run_id))
        self.run_dir = run_dir(cfg.runs_dir, self.run_id)
        check_seed(cfg.get("seed_everything"))
        if subcommand == "fit":
            check_fit_ckpt_path(local, self.run_dir)
        if subcommand == "fit" and local is None and os.environ.get("LOCAL_RANK", "0") == "0":
            _refuse_overwriting(self.run_id, self.run_dir)
        export_run_id(self.run_id)

    @staticmethod
    def _check_evaluated_weights(subcommand: str, local: str | None, untrained: bool) -> None:
        """validate/test/predict evaluate a trained model: a checkpoint file or reference, not silently the
        untrained weights (Lightning's default without --ckpt_path, and what `best`/`last` give outside a fit)."""
        fix = "pass --ckpt_path PATH or wandb:model-<run id>:best"
        if local in SPECIAL_CKPT_PATHS:
            raise ConfigError(f"--ckpt_path {local} names a checkpoint of a fit in this process, which "
                              f"`coupled {subcommand}` does not run: {fix}")
        if local is None and not untrained:
            raise ConfigError(f"coupled {subcommand} needs trained weights: {fix} (or --untrained true to "
                              f"evaluate the untrained model)")

    #: learner arguments that a checkpoint written before they existed lacks, and the value its run had: the
    #: config's would describe another run (e.g. a late term's start for a weight the checkpoint's options lack)
    BEFORE_THEY_EXISTED = {"objective_start_epochs": None}

    def _parse_ckpt_path(self) -> None:
        """Lightning's: the checkpoint's saved model hyperparameters replace the --model.* settings; those it
        predates take :attr:`BEFORE_THEY_EXISTED`."""
        subcommand = self.config.get("subcommand")
        CoupledArgumentParser.reading_checkpoint = self.config[subcommand].get("ckpt_path") if subcommand else None
        try:
            super()._parse_ckpt_path()
        finally:
            CoupledArgumentParser.reading_checkpoint = None
        saved = self.checkpoint.hparam_names if self.checkpoint else frozenset()  # read by parse_arguments
        for key, value in self.BEFORE_THEY_EXISTED.items():
            if saved and key not in saved:
                self.config[subcommand].model[key] = value

    def before_instantiate_classes(self) -> None:
        subcommand = self.subcommand
        if not subcommand:
            return
        cfg = self.config[subcommand]
        data_args = cfg.data.get("init_args") if cfg.get("data") is not None else None
        if subcommand == "fit":
            check_seeds_agree(cfg.model.get("seed"), data_args.get("seed") if data_args is not None else None)
        elif data_args is not None and "seed" in data_args and cfg.model.get("seed") is not None:
            # the data seed draws only the training order and binarization, which evaluation never reads:
            # take the checkpoint's, so `coupled test` on a seed-1 run needs no --data.seed 1
            data_args["seed"] = cfg.model.seed
        folder = str(self.run_dir)
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)  # before W&B starts: it looks for a git root there
            probe = Path(folder) / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:  # read-only, under a file, ...: W&B would fall back to the system temp folder
            raise ConfigError(f"cannot write the run folder {folder} ({exc.strerror or exc}): choose a writable "
                              f"--runs_dir") from None
        root = cfg.trainer.get("default_root_dir")
        if root is None or Path(folder).parent == Path(root):  # the run folder under it: Lightning's files too
            cfg.trainer.default_root_dir = folder
        if cfg.checkpoint.get("dirpath") is None:
            cfg.checkpoint.dirpath = os.path.join(folder, "checkpoints")
        if cfg.sample_grid.get("dirpath") is None:
            cfg.sample_grid.dirpath = os.path.join(folder, "samples")
        if cfg.artifacts.get("run_id") is None:
            cfg.artifacts.run_id = self.run_id
        for init in self._wandb_init_args(cfg):
            if init.get("id") is None and init.get("version") is None:
                init["id"] = self.run_id
            if init.get("save_dir") in (None, ".") and init.get("dir") is None:
                init["save_dir"] = folder
            if init.get("project") is None:
                init["project"] = DEFAULT_PROJECT
        if "weights_only" in cfg and cfg.weights_only is None:
            cfg.weights_only = True  # a checkpoint may come from a download: never unpickle code
        self.save_config_kwargs = {**self.save_config_kwargs, "run_dir": folder}

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        if self.subcommand == "predict":  # Lightning returns predictions to the caller; a CLI user gets a file
            extra.append(PredictionWriter(self.run_dir))
        extra.append(MetricsFile(self.run_dir / "metrics.json"))
        if config.get("enable_checkpointing") is False:
            extra = [cb for cb in extra if not isinstance(cb, ModelCheckpoint)]
        else:
            extra += last_checkpoint(extra, self._get(self.config, "checkpoint"))
        if getattr(self.model.hparams, "lr_schedule", None) and config.get("logger") not in (False, None):
            extra.append(LearningRateMonitor(logging_interval="epoch"))
        user_callbacks = config.get("callbacks") or []
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(cb, ProgressBar) for cb in [*user_callbacks, *extra]
        ):
            extra.append(EvalProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS))
        check_cpu_devices(config.get("accelerator"), config.get("devices"))
        try:
            trainer = self._instantiate_trainer(config, extra)
        except (MisconfigurationException, ValueError) as exc:  # Lightning's checks of the Trainer flags
            if isinstance(exc, CoupledError):  # already ours (e.g. a callback's setting): as it is
                raise
            raise ConfigError(trainer_error(exc)) from exc
        # Lightning's WandbLogger passes anonymous=None, which W&B warns is a setting "with no effect": unset it
        for logger in trainer.loggers:
            init = wandb_init_kwargs(logger)
            if init is not None and init.get("anonymous") is None:
                init.pop("anonymous", None)
        for callback in trainer.callbacks:  # fewer calls per step (see drop_idle_step_hooks)
            drop_idle_step_hooks(callback)
        # the SIGTERM save (in on_exception when the signal comes during validation) before the artifact log's
        # own on_exception, which indexes it: LightningCLI puts its extra callbacks before the Trainer's
        trainer.callbacks.sort(key=lambda cb: not isinstance(cb, GracefulShutdown))
        return trainer

    # ---- after fit: test the best checkpoint on one device ----
    def before_fit(self) -> None:
        check_val_check_interval(self.trainer, self.datamodule)
        if not self._get(self.config, "allow_other_data"):
            check_same_data(self.checkpoint and self.checkpoint.data_identity,
                            getattr(self.datamodule, "identity", None))

    def after_fit(self) -> None:
        stopped = any(isinstance(cb, GracefulShutdown) and cb.received for cb in self.trainer.callbacks)
        if stopped and not self.trainer.interrupted and self.trainer.is_global_zero:  # a SIGTERM after the last step
            print("received SIGTERM after the last training step: the fit's checkpoints are saved; no test after fit",
                  file=sys.stderr, flush=True)
        if self._get(self.config, "test_after_fit") and not self.trainer.interrupted and not stopped:
            fit_cfg = self._get(self.config_init, "trainer", default={})
            test_after_fit(self.trainer, self.model, self.datamodule, fit_cfg)

    # ---- helpers on the parsed config ----
    @staticmethod
    def _loggers(cfg: Namespace) -> list[Any]:
        logger = cfg.trainer.get("logger")
        if isinstance(logger, (list, tuple)):
            return list(logger)
        return [logger] if logger is not None else []

    def _wandb_init_args(self, cfg: Namespace) -> list[Namespace]:
        out = []
        for logger in self._loggers(cfg):
            if isinstance(logger, (Namespace, dict)) and str(logger.get("class_path", "")).endswith(".WandbLogger"):
                if logger.get("init_args") is None:
                    logger["init_args"] = Namespace()
                out.append(logger["init_args"])
        return out

    def _wandb_project(self, cfg: Namespace) -> str:
        for init in self._wandb_init_args(cfg):
            if init.get("project"):
                return str(init["project"])
        return DEFAULT_PROJECT

    def _explicit_wandb_id(self, cfg: Namespace) -> str | None:
        for init in self._wandb_init_args(cfg):
            value = init.get("id") or init.get("version")
            if value:
                return str(value)
        return None


def _refuse_overwriting(run_id: str, folder: Path) -> None:
    """A new model (fit without --ckpt_path) in a run folder that holds checkpoints would replace last.ckpt and
    repoint the index's latest/best: refuse (checked by the process the user started, not by DDP children)."""
    existing = sorted(p.name for p in (folder / "checkpoints").glob("*.ckpt")) if folder.is_dir() else []
    if existing:
        raise ConfigError(
            f"run {run_id} already has checkpoints ({', '.join(existing[:3])}) in {folder / 'checkpoints'}: a new "
            f"model there would overwrite them; resume it with --ckpt_path wandb:model-{run_id}:latest, or drop "
            f"the run id to start a new run"
        )
