"""Trainer assembly: the project's Trainer defaults, the checks Lightning lacks, and test-after-fit on one device.

Used by :class:`coupled.cli.CoupledCLI`; each function is one decision about the Trainer, named for it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import ModelCheckpoint

from callbacks.checkpoint import KeepBeforeLateTerms
from callbacks.finite_guard import FiniteLossGuard
from callbacks.metrics_file import MetricsFile
from callbacks.sample_quality import SampleQuality
from callbacks.samples import SampleGrid
from callbacks.shutdown import GracefulShutdown
from lightning_modules.errors import ConfigError, is_int
from lightning_modules.lightning_private import logged_step, set_logged_step

from .exit import squeeze

WANDB_LOGGER = "pytorch_lightning.loggers.WandbLogger"
DEFAULT_PROJECT = "coupled"
#: the CheckpointIO plugin every Trainer of the application uses (crash-safe saves, weights_only loads)
CHECKPOINT_IO = {"class_path": "coupled.checkpoint_io.AtomicCheckpointIO"}


def trainer_defaults() -> dict[str, Any]:
    """Trainer settings that differ from Lightning's; every one can be overridden by a flag or config."""
    return {
        "logger": {"class_path": WANDB_LOGGER, "init_args": {"project": DEFAULT_PROJECT}},
        # the DataModule shards every split itself (no duplicated evaluation samples under DDP)
        "use_distributed_sampler": False,
        # crash-safe checkpoint writes, weights_only loads with one-line errors
        "plugins": [dict(CHECKPOINT_IO)],  # a copy: the parser may fill it in
        # always added (not replaced by --trainer.callbacks): a run that diverges stops with one line,
        # a SIGTERM saves a checkpoint and exits 0
        "callbacks": [FiniteLossGuard(), GracefulShutdown()],
    }




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
    if not (is_int(devices) and devices >= 1):
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




def trainer_error(exc: BaseException) -> str:
    """Lightning's complaint about a Trainer flag, as one line that says it is a --trainer.* setting."""
    text = squeeze(str(exc)) or type(exc).__name__
    if "No supported gpu backend found" in text:
        return ("--trainer.accelerator gpu: this machine has no usable GPU (no CUDA or MPS device); "
                "use --trainer.accelerator cpu or auto")
    return f"bad --trainer.* setting: {text}"


def last_checkpoint(callbacks: list[Any], cfg: Any) -> list[Any]:
    """A ModelCheckpoint that writes ``last.ckpt`` after every validation (``--checkpoint.save_last``), and the
    copy of it kept from before a late term starts (:class:`callbacks.checkpoint.KeepBeforeLateTerms`).

    Lightning 2.6 writes ``last.ckpt`` only when a new top-k checkpoint is written, so with a monitor it would
    lag behind the training; this second callback, without a monitor, keeps it current. `cfg` holds the
    ``--checkpoint.*`` settings.
    """
    best = next((cb for cb in callbacks if isinstance(cb, ModelCheckpoint)), None)
    if best is None or best.save_last is not True or best.monitor is None:
        return []
    best.save_last = False
    last = ModelCheckpoint(
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
    return [last, KeepBeforeLateTerms(last)]


def test_after_fit(trainer: pl.Trainer, model: pl.LightningModule, datamodule: Any, cfg: dict[str, Any]) -> None:
    """Test the best checkpoint (without one, the last) once training has ended, on one device.

    Under DDP every rank has finished fit; rank 0 alone tests on its own device with a fresh Trainer built
    from the fit's `cfg` (the ``--trainer.*`` settings), so the test metrics are those of one process.
    """
    ckpt_path = None
    if not trainer.fast_dev_run:
        paths = [getattr(cb, attr, "") for attr in ("best_model_path", "last_model_path")
                 for cb in trainer.checkpoint_callbacks]
        ckpt_path = next((p for p in paths if p), None)
    if trainer.world_size == 1:
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        return
    trainer.strategy.barrier("coupled_test_after_fit")
    if trainer.global_rank != 0:
        return
    device = trainer.strategy.root_device
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # else torchmetrics would wait for the other ranks
    test_trainer = _single_device_trainer(type(trainer), trainer, device, cfg)
    set_logged_step(test_trainer, logged_step(trainer))  # test metrics at the last training step, as on one process
    with warnings.catch_warnings():  # the fit's ModelCheckpoint states are not needed to test
        warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint.*")
        test_trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)


def _single_device_trainer(trainer_class: type, trainer: pl.Trainer, device: torch.device, cfg: dict[str, Any]
                           ) -> pl.Trainer:
    accelerator = "gpu" if device.type == "cuda" else device.type
    devices = [device.index] if device.type == "cuda" and device.index is not None else 1
    return trainer_class(
        accelerator=accelerator,
        devices=devices,
        num_nodes=1,
        strategy="auto",
        precision=cfg.get("precision"),
        logger=list(trainer.loggers) or False,
        callbacks=[cb for cb in trainer.callbacks if isinstance(cb, (SampleGrid, SampleQuality, MetricsFile))],
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


def check_seed(seed: Any) -> None:
    """NumPy (which Lightning seeds too) takes seeds in 0..2**32-1; a larger one would fail deep in seeding."""
    if is_int(seed) and not 0 <= seed <= 2**32 - 1:
        raise ConfigError(f"--seed_everything {seed} is out of range: give an integer in 0..{2**32 - 1} (or true "
                          f"for a random one)")


def check_seeds_agree(model_seed: Any, data_seed: Any) -> None:
    """Lightning logs the model's and the DataModule's hyperparameters as one set and refuses two values of `seed`,
    but only once the loggers start: after RBM pretraining, or a test's checkpoint load. Say so before anything."""
    if model_seed is not None and data_seed is not None and model_seed != data_seed:
        raise ConfigError(f"model.seed is {model_seed} and data.seed {data_seed}: Lightning logs both as the one "
                          f"hyperparameter `seed`, so give them one value: --data.seed {model_seed} (a checkpoint's "
                          f"model.seed is its run's), or --model.seed {data_seed} in a fresh fit")


def check_fit_ckpt_path(local: str | None, folder: Any) -> None:
    """`fit --ckpt_path hpc|registry|best`: Lightning's special names that a new fit cannot start from here."""
    if local == "hpc" and not list(folder.glob("hpc_ckpt_*.ckpt")):
        raise ConfigError(f"--ckpt_path hpc resumes Lightning's SLURM requeue checkpoint, and {folder} holds none; "
                          f"pass a checkpoint file or wandb:model-<run id>:latest")
    if local in ("best", "registry"):
        raise ConfigError(f"coupled fit cannot start from --ckpt_path {local}: pass a checkpoint file or "
                          f"wandb:model-<run id>:latest (or last)")


def check_val_check_interval(trainer: pl.Trainer, datamodule: Any) -> None:
    """An integer --trainer.val_check_interval beyond the epoch's batches (Lightning raises it mid-setup)."""
    interval = trainer.val_check_interval
    sizes = getattr(datamodule, "split_sizes", None)
    batch_size = getattr(datamodule, "batch_size", None)
    if not isinstance(interval, int) or trainer.check_val_every_n_epoch is None or not sizes or not batch_size:
        return
    per_rank = -(-int(sizes["train"]) // max(1, trainer.world_size))
    batches = -(-per_rank // batch_size)
    if isinstance(trainer.limit_train_batches, int):
        batches = min(batches, trainer.limit_train_batches)
    if interval > batches:
        raise ConfigError(f"--trainer.val_check_interval {interval} is more than the {batches} training batches of "
                          f"an epoch: give at most {batches}, a fraction such as 0.5, or --trainer."
                          f"check_val_every_n_epoch null to count batches across epochs")


def check_same_data(saved: dict | None, current: dict | None) -> None:
    """A checkpoint continues training only on the data it was trained on (unless --allow_other_data true)."""
    if not saved or not current:  # written before the identity was kept, or a DataModule without one
        return
    for key in ("datamodule", "name", "image_shape", "class_names", "train_images", "content"):
        if key in saved and key in current and saved[key] != current[key]:
            shown = {k: (v if len(str(v)) < 60 else str(v)[:57] + "...") for k, v in
                     (("saved", saved[key]), ("now", current[key]))}
            raise ConfigError(f"the --ckpt_path checkpoint was trained on other data ({key}: {shown['saved']} in "
                              f"the checkpoint, {shown['now']} now): pass the data it was trained on, or "
                              f"--allow_other_data true to fine-tune on this data")
