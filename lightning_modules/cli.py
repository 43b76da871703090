"""The command line: ``coupled fit|validate|test|predict --config configs/mnist.yaml [--trainer.* ...]``
and ``coupled sample --ckpt_path ...`` (:mod:`lightning_modules.sample`).

A :class:`~pytorch_lightning.cli.LightningCLI` over :class:`GenerativeLearner` and the image DataModules,
with every Trainer flag as Lightning users know it. On top of Lightning's own CLI:

* the model's ``input_dim`` and ``num_classes`` are linked from the DataModule;
* one run id and one run folder ``<runs_dir>/<run id>/`` (checkpoints/, samples/, config.yaml, wandb/),
  the run id shared with DDP child processes through the environment (:mod:`lightning_modules.runs`);
* W&B (``WandbLogger``, project ``coupled``) by default, online when an API key is configured or
  ``WANDB_MODE=online``, offline otherwise, never a prompt;
* default callbacks, each with its own flags: ``--checkpoint.*`` (ModelCheckpoint on ``val/acc``),
  ``--sample_grid.*``, ``--recognition.*``, ``--artifacts.*``, plus the loss guard and graceful SIGTERM;
* ``--ckpt_path wandb:[[ENTITY/]PROJECT/]model-<run id>[:latest|:best|:vN]`` resolved on every rank,
  and resuming continues the W&B run whose id the checkpoint holds (:mod:`lightning_modules.resume`);
* after ``fit``, ``test`` on the best checkpoint on one device (``--test_after_fit false`` to skip);
* user errors print one line ``coupled: error: ...`` and exit with status 2.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import Namespace
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from callbacks.artifacts import CheckpointArtifacts
from callbacks.checkpoint_io import CheckpointError
from callbacks.predictions import PredictionWriter
from callbacks.progress import EvalProgressBar
from callbacks.recognition import RecognitionAccuracy
from callbacks.safety import FiniteLossGuard, GracefulShutdown, NonFiniteLossError
from callbacks.samples import SampleGrid
from datamodules import DataError, HFImageDataModule

from .errors import ConfigError
from .learner import GenerativeLearner
from .quiet import quiet
from .resume import SPECIAL_CKPT_PATHS, ResumeError, checkpoint_run_id, resolve_ckpt_path
from .runs import (
    check_run_id,
    configure_wandb_mode,
    export_run_id,
    inherited_run_id,
    local_rank,
    new_run_id,
    run_dir,
    wandb_online,
)

PROG = "coupled"
DEFAULT_RUNS_DIR = "runs"
PROGRESS_REFRESH_STEPS = 20
WANDB_LOGGER = "pytorch_lightning.loggers.WandbLogger"
DEFAULT_PROJECT = "coupled"
USER_ERRORS = (ConfigError, DataError, ResumeError, CheckpointError, FileNotFoundError, yaml.YAMLError)


def trainer_defaults() -> dict[str, Any]:
    """Trainer settings that differ from Lightning's; every one can be overridden by a flag or config."""
    return {
        "logger": {"class_path": WANDB_LOGGER, "init_args": {"project": DEFAULT_PROJECT}},
        # the DataModule shards every split itself (no duplicated evaluation samples under DDP)
        "use_distributed_sampler": False,
        # crash-safe checkpoint writes, weights_only loads with one-line errors
        "plugins": [{"class_path": "callbacks.checkpoint_io.AtomicCheckpointIO"}],
        # always added (not replaced by --trainer.callbacks): a run that diverges stops with one line,
        # a SIGTERM saves a checkpoint and exits 0
        "callbacks": [FiniteLossGuard(), GracefulShutdown()],
    }


def parser_kwargs() -> dict[str, Any]:
    """The main parser's and, per subcommand, a short usage line (the full one lists every flag)."""
    kwargs: dict[str, Any] = {
        "prog": PROG,
        "description": "Coupled recognition/generation sigmoid networks (arXiv:1709.08524) on PyTorch "
        "Lightning. Example: coupled fit --config configs/mnist.yaml",
    }
    for sub in ("fit", "validate", "test", "predict"):
        kwargs[sub] = {
            "usage": f"{PROG} {sub} [-h] [--config CONFIG] [--trainer.* ...] [--model.* ...] [--data.* ...] "
            f"[--ckpt_path PATH | wandb:[[ENTITY/]PROJECT/]model-RUNID[:ALIAS]] [...]",
        }
    return kwargs


class CoupledArgumentParser(LightningArgumentParser):
    """jsonargparse's parser, whose argument errors are one line ``coupled: error: ...`` (exit status 2).

    jsonargparse prints the usage, a tip and a multi-line message (a Union's subtypes, its errors, the given
    value); :func:`argument_error` condenses that to the key, what was expected and what was given.
    ``--help`` is untouched. Parsers that raise instead of exiting (``exit_on_error=False``, used by
    jsonargparse internally, or ``JSONARGPARSE_DEBUG``) keep jsonargparse's behaviour.
    """

    #: the command line being parsed (set by :meth:`CoupledCLI.parse_arguments`), to name a bad --config file
    cli_args: list[str] | None = None
    #: the checkpoint whose saved hyperparameters are being parsed (:meth:`CoupledCLI._parse_ckpt_path`)
    reading_checkpoint: str | None = None

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG", "").lower() in ("1", "true", "yes"):
            return super().error(message, ex)
        args = CoupledArgumentParser.cli_args
        args = args if args is not None else sys.argv[1:]
        ckpt = CoupledArgumentParser.reading_checkpoint
        if ckpt is not None:  # raised through Lightning, which would add a line of its own to a SystemExit
            raise CheckpointError(
                f"checkpoint {ckpt} holds model hyperparameters this program does not accept "
                f"({argument_error(message, args)}): it was written by another model or version"
            )
        _fail(argument_error(message, args), 2)


def _config_files(args: list[str]) -> list[str]:
    """The values of ``--config`` in ``args`` (``--config X`` and ``--config=X``)."""
    out = []
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            out.append(args[i + 1])
        elif isinstance(arg, str) and arg.startswith("--config="):
            out.append(arg.split("=", 1)[1])
    return out


def _bad_config_file(args: list[str]) -> str | None:
    """What is wrong with the first ``--config`` file that is not a YAML mapping, if one is not."""
    for path in _config_files(args):
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except (OSError, UnicodeDecodeError) as exc:
            return f"config file {path} cannot be read ({_squeeze(str(exc))})"
        except yaml.YAMLError as exc:
            return f"bad YAML in config file {path}: {_squeeze(str(exc))}"
        if loaded is not None and not isinstance(loaded, dict):
            return (f"config file {path} is not a YAML mapping of settings (it holds a {type(loaded).__name__}); "
                    f"see configs/mnist.yaml")
    return None


def _squeeze(text: str) -> str:
    return " ".join(text.split())


_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Errors:|Given value type:.*"
    r"|Problem with given class_path .*|Expected a <class 'NoneType'>.*)$"
)
_LITERAL = re.compile(r"^Expected a typing\.Literal\[(.*)\](?:\. Got value: (.*))?$")
_NESTED = re.compile(r"^NestedArg\(key='([^']*)', val=(.*)\)$")


def _type_name(text: str) -> str:
    """``<class 'int'>`` -> ``int``, ``<class 'NoneType'>`` -> ``None``."""
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text.strip())
    return "None" if text == "NoneType" else text


def argument_error(message: str, args: list[str] | None = None) -> str:
    """jsonargparse's (possibly multi-line) argument error as one line naming the key and the value."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "bad arguments"
    if lines[0].startswith(("Problems parsing config", "Unexpected config")):
        bad = _bad_config_file(list(args or []))
        if bad:
            return bad
    if len(lines) == 1:
        return lines[0]
    if lines[0].startswith("Problems parsing config"):
        text = _squeeze(" ".join(lines)).split(":", 1)[1].strip().replace(' in "<unicode string>",', ",")
        return "bad YAML in a --config file: " + text
    keys: list[str] = []
    value = subtypes = None
    details: list[str] = []
    literals: list[str] = []
    for line in lines:
        line = line.removeprefix("- ").strip()
        m = _KEY.match(line)
        if m:
            keys.append(m[1])
            line = m[2]
            if not line:
                continue
        if line.startswith("Given value:"):
            value = line.split(":", 1)[1].strip()
            nested = _NESTED.match(value)
            if nested:  # --data.batch_size 1.5 is reported on "data" with the nested key and value
                keys.append(nested[1])
                value = nested[2].strip("'\"")
            continue
        if line.startswith("Subtypes:"):
            subtypes = line.split(":", 1)[1].strip()
            continue
        if _NOISE.match(line):
            continue
        lit = _LITERAL.match(line)
        if lit:
            literals += [v.strip() for v in lit[1].split(",")]
            value = lit[2] if lit[2] is not None else value
            continue
        m = re.match(r"^(.*)\. Got value: (.*)$", line)
        if m:
            line, value = m[1], m[2]
        details.append(line)
    key = ".".join(dict.fromkeys(keys))
    if literals:
        details.insert(0, "expected one of " + ", ".join(dict.fromkeys(literals)))
    elif not details and subtypes and not (keys and len(keys) > 1):
        names = [_type_name(t) for t in re.split(r",\s*(?![^\[]*\])", subtypes.strip("[]"))]
        details.append("expected " + " or ".join(names))
    text = "; ".join(dict.fromkeys(
        "expected " + _type_name(d[len("Expected a "):]) if re.match(r"^Expected an? <class '[\w.]+'>$", d) else d
        for d in details
    ))
    if not text:
        text = "invalid value"
    if value is not None and value not in text:
        text += f", got {value}"
    return f'Parser key "{key}": {text}' if key else _squeeze(" ".join(lines))


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
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile)
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                run = logger.experiment
                dumped = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
                run.config.update({"cli": dumped}, allow_val_change=True)
                # in the run's files, not as config.yaml: W&B keeps its own config.yaml there
                copy = Path(run.dir) / "coupled-config.yaml"
                shutil.copyfile(path, copy)
                run.save(str(copy), base_path=run.dir, policy="now")


class CoupledCLI(LightningCLI):
    """LightningCLI with the project's defaults, run folders, W&B resume and test-after-fit."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any):
        self.run_id: str | None = None
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
            "--untrained", type=bool, default=False,
            help="validate/test/predict the freshly initialised model (otherwise they need --ckpt_path).",
        )
        parser.set_defaults({"data": {"class_path": "datamodules.MNISTDataModule"}})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
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
        parser.add_lightning_class_args(RecognitionAccuracy, "recognition")
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
            ckpt_run_id = checkpoint_run_id(local)  # reads it safely: a missing or bad file stops here
        cfg.ckpt_path = local
        if subcommand != "fit":
            self._check_evaluated_weights(subcommand, local, cfg.get("untrained"))
        run_id = (
            self._explicit_wandb_id(cfg)
            or (ckpt_run_id if subcommand == "fit" else None)
            or inherited_run_id()
            or new_run_id()
        )
        self.run_id = check_run_id(run_id)
        self.run_dir = run_dir(cfg.runs_dir, self.run_id)
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

    def _parse_ckpt_path(self) -> None:
        """Lightning's: the checkpoint's saved model hyperparameters replace the --model.* settings."""
        subcommand = self.config.get("subcommand")
        CoupledArgumentParser.reading_checkpoint = self.config[subcommand].get("ckpt_path") if subcommand else None
        try:
            super()._parse_ckpt_path()
        finally:
            CoupledArgumentParser.reading_checkpoint = None

    def before_instantiate_classes(self) -> None:
        subcommand = self.subcommand
        if not subcommand:
            return
        cfg = self.config[subcommand]
        folder = str(self.run_dir)
        Path(folder).mkdir(parents=True, exist_ok=True)  # before W&B starts: it looks for a git root there
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
        if config.get("enable_checkpointing") is False:
            extra = [cb for cb in extra if not isinstance(cb, ModelCheckpoint)]
        else:
            extra += self._last_checkpoint(extra)
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
            if _user_error(exc) is not None:
                raise
            raise ConfigError(trainer_error(exc)) from exc
        # Lightning's WandbLogger passes anonymous=None, which W&B warns is a setting "with no effect": unset it
        # (in WandbLogger's private _wandb_init, read before its first use of W&B)
        for logger in trainer.loggers:
            init = getattr(logger, "_wandb_init", None)
            if isinstance(init, dict) and init.get("anonymous") is None:
                init.pop("anonymous", None)
        return trainer

    def _last_checkpoint(self, callbacks: list[Any]) -> list[ModelCheckpoint]:
        """A ModelCheckpoint that writes ``last.ckpt`` after every validation (``--checkpoint.save_last``).

        Lightning 2.6 writes ``last.ckpt`` only when a new top-k checkpoint is written, so with a monitor it
        would lag behind the training; this second callback, without a monitor, keeps it current.
        """
        best = next((cb for cb in callbacks if isinstance(cb, ModelCheckpoint)), None)
        if best is None or best.save_last is not True or best.monitor is None:
            return []
        cfg = self._get(self.config, "checkpoint")
        best.save_last = False
        return [
            ModelCheckpoint(
                dirpath=best.dirpath,
                filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
                monitor=None,
                save_top_k=1,
                enable_version_counter=False,
                every_n_train_steps=cfg.get("every_n_train_steps"),
                train_time_interval=cfg.get("train_time_interval"),
                every_n_epochs=cfg.get("every_n_epochs"),
                save_on_train_epoch_end=cfg.get("save_on_train_epoch_end"),
                save_weights_only=bool(cfg.get("save_weights_only")),
            )
        ]

    # ---- after fit: test the best checkpoint on one device ----
    def after_fit(self) -> None:
        trainer = self.trainer
        if not self._get(self.config, "test_after_fit") or trainer.interrupted:
            return
        ckpt_path = None
        if not trainer.fast_dev_run:  # the best checkpoint; without one (no validation) the last one
            paths = [getattr(cb, attr, "") for attr in ("best_model_path", "last_model_path")
                     for cb in trainer.checkpoint_callbacks]
            ckpt_path = next((p for p in paths if p), None)
        if trainer.world_size == 1:
            trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path, weights_only=True)
            return
        # DDP: every rank has finished fit; rank 0 alone tests on its own device with a fresh Trainer
        trainer.strategy.barrier("coupled_test_after_fit")
        if trainer.global_rank != 0:
            return
        device = trainer.strategy.root_device
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # else torchmetrics would wait for the other ranks
        test_trainer = self._single_device_trainer(trainer, device)
        with warnings.catch_warnings():  # the fit's ModelCheckpoint states are not needed to test
            warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint.*")
            test_trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path, weights_only=True)

    def _single_device_trainer(self, trainer: pl.Trainer, device: torch.device) -> pl.Trainer:
        cfg = self._get(self.config_init, "trainer", default={})
        accelerator = "gpu" if device.type == "cuda" else device.type
        devices = [device.index] if device.type == "cuda" and device.index is not None else 1
        return self.trainer_class(
            accelerator=accelerator,
            devices=devices,
            num_nodes=1,
            strategy="auto",
            precision=cfg.get("precision"),
            logger=list(trainer.loggers) or False,
            callbacks=[cb for cb in trainer.callbacks if isinstance(cb, SampleGrid)],
            enable_checkpointing=False,
            enable_progress_bar=cfg.get("enable_progress_bar"),
            enable_model_summary=False,
            fast_dev_run=cfg.get("fast_dev_run", False),
            limit_test_batches=cfg.get("limit_test_batches"),
            deterministic=cfg.get("deterministic"),
            inference_mode=cfg.get("inference_mode", True),
            default_root_dir=trainer.default_root_dir,
            use_distributed_sampler=False,
            plugins=cfg.get("plugins"),
        )

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


# ---- Trainer flags ----


def check_cpu_devices(accelerator: Any, devices: Any) -> None:
    """Refuse more CPU processes than the machine has CPUs (Lightning would start them all).

    On the CPU ``--trainer.devices N`` starts N DDP processes; any N is accepted by Lightning, so a typo
    such as ``1000`` would fork a thousand copies of the program. GPU counts are checked by Lightning.
    """
    name = accelerator if isinstance(accelerator, str) else None
    on_cpu = isinstance(accelerator, CPUAccelerator) or name == "cpu" or (
        name in (None, "auto") and not torch.cuda.is_available()
        and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    )
    if not on_cpu or devices in (None, "auto"):
        return
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        # Lightning raises a TypeError from deep in its device parsing for these
        raise ConfigError(
            f"--trainer.devices {devices!r} is not a number of CPU processes: give a positive integer or auto"
        )
    cpus = os.cpu_count() or 1
    if isinstance(devices, int) and devices > cpus:
        raise ConfigError(
            f"--trainer.devices {devices} asks for {devices} CPU processes but this machine has {cpus} CPUs; "
            f"lower --trainer.devices (on the CPU each device is one process)"
        )


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


def trainer_error(exc: BaseException) -> str:
    """Lightning's complaint about a Trainer flag, as one line that says it is a --trainer.* setting."""
    text = _squeeze(str(exc)) or type(exc).__name__
    if "No supported gpu backend found" in text:
        return ("--trainer.accelerator gpu: this machine has no usable GPU (no CUDA or MPS device); "
                "use --trainer.accelerator cpu or auto")
    return f"bad --trainer.* setting: {text}"


# ---- the entry point: user errors as one line ----


def _user_error(exc: BaseException) -> BaseException | None:
    """The first user error (ours, the data's, a missing file, bad YAML) in ``exc``'s chain, if any."""
    return _find(exc, USER_ERRORS)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, FileNotFoundError) and exc.filename:
        text = f"no such file: {exc.filename}"
    elif isinstance(exc, yaml.YAMLError):
        text = f"bad YAML: {text}"
    return text or type(exc).__name__


def _fail(message: str, code: int) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _finish_wandb(exit_code: int) -> None:
    """Close this process's W&B run, if one was started (a later ``main()`` in-process starts afresh)."""
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is not None:
        run.finish(exit_code=exit_code)


def main(args: list[str] | None = None) -> None:
    """``coupled``: run the CLI on ``args`` (default ``sys.argv[1:]``)."""
    exit_code = 1
    try:
        configure_wandb_mode()
        with warnings.catch_warnings():
            quiet()
            if args is not None:  # a script or a test that passes its own args: its sys.argv is not ours
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            argv = sys.argv[1:] if args is None else list(args)
            if argv[:1] == ["sample"]:  # not a Trainer verb: its own small parser (lightning_modules/sample.py)
                from .sample import main as sample_main

                sample_main(argv[1:])
            else:
                CoupledCLI(args=args)
        exit_code = 0
    except Exception as exc:
        diverged = _find(exc, NonFiniteLossError)
        if diverged is not None:  # training diverged: reported as one line, but not a usage error
            _fail(_one_line(diverged), 1)
        user = _user_error(exc)
        if user is None:
            raise
        _fail(_one_line(user), 2)
    finally:
        _finish_wandb(exit_code)


def _find(exc: BaseException, kind: type) -> BaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":  # pragma: no cover
    main()
