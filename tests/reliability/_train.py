"""A tiny deterministic training setup shared by the reliability tests (in-process and in subprocesses).

`TinyDataModule` serves an in-memory dataset in an order that depends only on (seed, epoch), like the
project's ShardBatchSampler, through a train loader that Lightning can checkpoint (`ResumableLoader`),
so that a mid-epoch resume skips exactly the batches already trained. `run()` fits a
`GenerativeLearner(sizes=[16, 8, 3])` with the reliability callbacks and plugin wired as the CLI wires them.

Run as a script (the kill -9 and SIGTERM tests do):
    python -m tests.reliability._train ROOT MAX_EPOCHS [--resume CKPT] [--every N] [--sleep S] [--nan-at STEP]

the exit status and stderr are what the tests check.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from callbacks.checkpoint_io import AtomicCheckpointIO, check_compatible
from callbacks.safety import FiniteLossGuard, GracefulShutdown
from lightning_modules import GenerativeLearner

SIZES = [16, 8, 3]


class _Batches(Dataset):
    """``dataset[index_tensor] -> (x[idx], y[idx])``: whole batches in one indexing op."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx):
        return self.x[idx], self.y[idx]


def _identity(batch):
    return batch


class EpochSampler:
    """Yields index batches of a permutation seeded by (seed, epoch), like the project's ShardBatchSampler.

    Lightning calls `set_epoch` (on ``DataLoader.sampler``) before each epoch's iteration. After a restore,
    `resume(epoch, skip)` makes the next iteration serve `epoch` without its first `skip` batches.
    """

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        if self._resume is None:
            self.epoch = int(epoch)

    def resume(self, epoch: int, skip: int) -> None:
        self._resume = (int(epoch), int(skip))

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        epoch, skip = self._resume if self._resume is not None else (self.epoch, 0)
        self._resume = None
        self.epoch = epoch
        if self.shuffle:
            idx = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
        else:
            idx = torch.arange(self.n)
        return iter(list(idx.split(self.batch_size))[skip:])


class ResumableLoader(DataLoader):
    """A train DataLoader that Lightning treats as stateful (``state_dict``/``load_state_dict``).

    Lightning 2.6 does not fast-forward a plain map-style loader on a mid-epoch resume (it warns
    "your dataloader is not resumable" and replays the epoch from its first batch). The state is read
    from the trainer's progress at save time (the loader itself runs a batch ahead because of
    prefetching): the epoch and how many of its batches are done; a finished epoch resumes at the next.
    """

    def __init__(self, dataset, sampler: EpochSampler, progress_fn):
        super().__init__(dataset, batch_size=None, sampler=sampler, collate_fn=_identity, num_workers=0)
        self.progress_fn = progress_fn

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.progress_fn()
        return {"epoch": int(epoch), "batches_done": int(done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self.sampler):
            epoch, done = epoch + 1, 0
        self.sampler.resume(epoch, done)


class TinyDataModule(pl.LightningDataModule):
    def __init__(self, n_train: int = 96, n_val: int = 32, batch_size: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.x = torch.rand(n_train + n_val, SIZES[0], generator=g)
        self.y = torch.randint(0, SIZES[-1], (n_train + n_val,), generator=g)
        self.n_train, self.batch_size, self.seed = n_train, batch_size, seed

    def _progress(self) -> tuple[int, int]:
        loop = self.trainer.fit_loop
        return loop.epoch_progress.current.completed, loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self):
        ds = _Batches(self.x[: self.n_train], self.y[: self.n_train])
        return ResumableLoader(
            ds, EpochSampler(self.n_train, self.batch_size, self.seed, True), self._progress
        )

    def val_dataloader(self):
        ds = _Batches(self.x[self.n_train :], self.y[self.n_train :])
        sampler = EpochSampler(len(ds), self.batch_size, self.seed, shuffle=False)
        return DataLoader(ds, batch_size=None, sampler=sampler, collate_fn=_identity, num_workers=0)


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
    """The learner plus the checkpoint compatibility check (what the lead is asked to add) and an
    optional injected NaN in the generation part at one step."""

    def __init__(self, *args, nan_at_step: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.nan_at_step = nan_at_step

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_compatible(checkpoint, self)

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
) -> tuple[pl.Trainer, Recorder, ModelCheckpoint]:
    rec = Recorder()
    ckpt = ModelCheckpoint(
        dirpath=os.path.join(root, "ckpt"),
        save_last=True,
        every_n_train_steps=every_n_steps,
        save_on_exception=save_on_exception,
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
    resume: str | None = None,
    nan_at_step: int | None = None,
    sleep: float = 0.0,
    every_n_steps: int | None = 1,
    **kw,
):
    pl.seed_everything(0, workers=True)
    model = CheckedLearner(sizes=SIZES, lr=0.05, nan_at_step=nan_at_step)
    extra = [SlowDown(sleep)] if sleep else []
    trainer, rec, ckpt = make_trainer(root, max_epochs, every_n_steps=every_n_steps, extra=extra, **kw)
    trainer.fit(model, datamodule=TinyDataModule(), ckpt_path=resume)
    return trainer, model, rec, ckpt


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("max_epochs", type=int)
    p.add_argument("--resume")
    p.add_argument("--every", type=int, default=1, help="checkpoint every N steps; 0: at epoch ends")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--nan-at", type=int)
    p.add_argument("--out", help="save the final state_dict here")
    a = p.parse_args(argv)
    trainer, model, _, _ = run(
        a.root,
        a.max_epochs,
        resume=a.resume,
        sleep=a.sleep,
        every_n_steps=a.every or None,
        nan_at_step=a.nan_at,
    )
    if a.out:
        torch.save(
            {
                "state_dict": model.state_dict(),
                "optimizer": trainer.optimizers[0].state_dict(),
                "global_step": trainer.global_step,
            },
            a.out,
        )
    print(f"done at step {trainer.global_step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
