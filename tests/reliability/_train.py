"""A tiny deterministic training setup shared by the reliability tests (in-process and in subprocesses).

The project's real `HFImageDataModule` (dynamic binarization, its resumable training loader) serves a tiny
generated hub-layout parquet dataset (`write_data`: 96 training images of 4x4 grey pixels, 3 classes, 32
validation and 16 test images; 6 batches of 16 per epoch). `run()` fits a
`GenerativeLearner(sizes=[input_dim, 8, classes])` with the reliability callbacks and plugin wired as the
CLI wires them.

Run as a script (the kill -9 and SIGTERM tests do):
    python -m tests.reliability._train ROOT MAX_EPOCHS --data DATA [--resume CKPT] [--every N] [--sleep S]

the exit status and stderr are what the tests check. DATA is a folder made by `write_data`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from callbacks.finite_guard import FiniteLossGuard
from callbacks.shutdown import GracefulShutdown
from coupled.checkpoint_io import AtomicCheckpointIO
from datamodules import HFImageDataModule
from lightning_modules import GenerativeLearner
from tests.datamodules.helpers import make_dataset

SIZES = [16, 8, 3]  # [input_dim, hidden, classes] of the tiny dataset
N_TRAIN, N_VAL, N_TEST, BATCH_SIZE = 96, 32, 16, 16


def write_data(root: Path) -> Path:
    """The tiny dataset under ``root/data`` (its decoded-tensor cache goes to ``root/cache``)."""
    make_dataset(
        root / "data", n_train=N_TRAIN + N_VAL, n_test=N_TEST, size=(4, 4), mode="L", num_classes=SIZES[-1]
    )
    return root


def datamodule(data: str | Path, seed: int = 0, eval_batch_size: int | None = None) -> HFImageDataModule:
    data = Path(data)
    return HFImageDataModule(
        name="test/tiny",
        data_dir=str(data / "data"),
        cache_dir=str(data / "cache"),
        batch_size=BATCH_SIZE,
        eval_batch_size=eval_batch_size,
        val_size=N_VAL,
        binarize="dynamic",
        seed=seed,
    )


class Recorder(Callback):
    """Every training step's loss parts and every epoch's callback_metrics, as plain floats."""

    def __init__(self):
        self.steps: dict[int, dict[str, float]] = {}
        self.epochs: dict[int, dict[str, float]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps[trainer.global_step] = {k: float(v.detach()) for k, v in outputs.items()}

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs[trainer.current_epoch] = {
            k: float(v) for k, v in trainer.callback_metrics.items() if not k.endswith("_step")
        }


class SlowDown(Callback):
    """Sleeps after each batch so that a test can signal or kill the process mid-run."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)


class CheckedLearner(GenerativeLearner):
    """The learner with an optional injected NaN in the generation part at one step."""

    def __init__(self, *args, nan_at_step: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.nan_at_step = nan_at_step

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        if self.nan_at_step is not None and self.global_step == self.nan_at_step:
            out = dict(out)
            out["generation"] = out["generation"] * float("nan")
            out["loss"] = out["recognition"] + out["generation"]
        return out


def make_trainer(
    root: str,
    max_epochs: int,
    *,
    every_n_steps: int | None = 1,
    extra=(),
    save_on_exception=False,
    max_steps: int = -1,
    guard: bool = True,
    keep_all: bool = False,
) -> tuple[pl.Trainer, Recorder, ModelCheckpoint]:
    rec = Recorder()
    ckpt = ModelCheckpoint(
        dirpath=os.path.join(root, "ckpt"),
        save_last=True,
        every_n_train_steps=every_n_steps,
        save_on_exception=save_on_exception,
        save_top_k=-1 if keep_all else 1,
    )
    callbacks = ([FiniteLossGuard()] if guard else []) + [GracefulShutdown(), rec, *extra, ckpt]
    trainer = pl.Trainer(
        default_root_dir=root,
        max_epochs=max_epochs,
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        deterministic=True,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return trainer, rec, ckpt


def run(
    root: str,
    max_epochs: int,
    data: str | Path,
    resume: str | None = None,
    nan_at_step: int | None = None,
    sleep: float = 0.0,
    every_n_steps: int | None = 1,
    objective: str = "symmetric",
    extra=(),
    eval_batch_size: int | None = None,
    **kw,
):
    pl.seed_everything(0, workers=True)
    dm = datamodule(data, eval_batch_size=eval_batch_size)
    sizes = [dm.input_dim, SIZES[1], dm.num_classes]
    model = CheckedLearner(sizes=sizes, lr=0.05, objective=objective, nan_at_step=nan_at_step)
    extra = [*extra, SlowDown(sleep)] if sleep else list(extra)
    trainer, rec, ckpt = make_trainer(root, max_epochs, every_n_steps=every_n_steps, extra=extra, **kw)
    trainer.fit(model, datamodule=dm, ckpt_path=resume)
    return trainer, model, rec, ckpt


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("max_epochs", type=int)
    p.add_argument("--data", required=True, help="a folder made by write_data")
    p.add_argument("--resume")
    p.add_argument("--every", type=int, default=1, help="checkpoint every N steps; 0: at epoch ends")
    p.add_argument("--sleep", type=float, default=0.0)
    a = p.parse_args(argv)
    trainer, _, _, _ = run(
        a.root, a.max_epochs, a.data, resume=a.resume, sleep=a.sleep, every_n_steps=a.every or None
    )
    print(f"done at step {trainer.global_step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
