"""The arms `make bench` times against each other (scripts/bench.py): one training epoch each way, the data
pipeline alone, and the matmul floor of the likelihood estimate."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from datamodules import MNISTDataModule
from lightning_modules import OBJECTIVES, CoupledSigmoidNet, GenerativeLearner, make_optimizer

ROOT = Path(__file__).resolve().parents[1]
SIZES = [784, 512, 512, 10]


def mnist_dir(args) -> str | None:
    if args.data_dir and (Path(args.data_dir) / "mnist").is_dir():
        return str(Path(args.data_dir) / "mnist")
    return None


# ---- training: framework vs plain loop ----
class EpochTimer(pl.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self._t0)


def framework_epoch(args, runs_dir: str) -> float:
    """One training epoch through `coupled fit` (CLI, W&B offline, progress bar, default callbacks)."""
    from coupled.cli import CoupledCLI
    from coupled.trainer import trainer_defaults

    os.environ.pop("COUPLED_RUN_ID", None)  # a new run each time (the CLI exports its run id for DDP children)
    timer = EpochTimer()
    defaults = trainer_defaults()
    defaults["callbacks"] = [*defaults["callbacks"], timer]
    argv = ["fit", "--config", str(ROOT / "configs" / "symmetric.yaml"), "--trainer.max_epochs", "1",
            "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
            "--test_after_fit", "false", "--runs_dir", runs_dir, "--trainer.enable_progress_bar", "true",
            "--trainer.accelerator", "cpu"]  # the CPU rows stay CPU rows on a machine with a GPU
    if mnist_dir(args):
        argv += ["--data.data_dir", mnist_dir(args)]
    CoupledCLI(args=argv, trainer_defaults=defaults)
    return timer.seconds[0]


class ManualStepLearner(GenerativeLearner):
    """The learner with manual optimization: its training_step runs zero_grad, backward and step itself, so
    Lightning's optimizer closure is skipped (and with it Lightning's gradient clipping and accumulation)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        out = super().training_step(batch, batch_idx)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(out["loss"])
        opt.step()
        return out


def bare_lightning_epoch(args, manual: bool = False) -> float:
    """The floor of any Lightning run: the same LightningModule and DataModule in a bare pl.Trainer (no
    logger, progress bar, checkpointing or callbacks other than the timer); `manual`: manual optimization."""
    dm = MNISTDataModule(data_dir=mnist_dir(args))
    torch.manual_seed(0)
    model = (ManualStepLearner if manual else GenerativeLearner)(
        hidden_sizes=SIZES[1:-1], input_dim=SIZES[0], num_classes=SIZES[-1], objective="symmetric", lr=1e-3)
    return bare_trainer_epoch(model, dm)


def bare_trainer_epoch(model: pl.LightningModule, dm) -> float:
    """Seconds of one training epoch in a pl.Trainer with no logger, progress bar, checkpointing or callback
    other than the timer."""
    timer = EpochTimer()
    pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
               callbacks=[timer]).fit(model, datamodule=dm)
    return timer.seconds[0]


def plain_loop_epoch(dm, loss_fn, opt) -> float:
    """Seconds of one epoch of a plain loop over the DataModule's training batches: transform, loss, step."""
    t0 = time.perf_counter()
    for x, y in dm.train_dataloader():
        loss = loss_fn(dm.transform(x, train=True), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


class LinearProbe(pl.LightningModule):
    """A 784 -> 10 softmax regression: a step with almost no work, so a bare Trainer's epoch minus a plain
    loop's is Lightning's own cost per step."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(SIZES[0], SIZES[-1])

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.linear(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def lightning_step_overhead(args, repeats: int) -> dict:
    """Seconds per step that a bare pl.Trainer adds to a plain loop, on a model whose step costs ~nothing."""
    dm = MNISTDataModule(data_dir=mnist_dir(args))
    dm.setup("fit")
    steps = len(dm.train_dataloader())
    bare, plain = [], []
    for _ in range(repeats):
        torch.manual_seed(0)
        bare.append(bare_trainer_epoch(LinearProbe(), dm))
        model = LinearProbe()
        plain.append(plain_loop_epoch(dm, lambda x, y, m=model: m.training_step((x, y), 0),
                                      model.configure_optimizers()))
    return {"seconds_per_step": (statistics.median(bare) - statistics.median(plain)) / steps, "steps": steps}


def plain_epoch(args, compiled: bool = False) -> float:
    """The same epoch as a bare loop: same model, DataModule batches, Adam, objective (through torch.compile
    if `compiled`, as `--model.compile true` runs it; the first call of a process compiles)."""
    dm = MNISTDataModule(data_dir=mnist_dir(args))
    dm.setup("fit")
    torch.manual_seed(0)
    net = CoupledSigmoidNet(SIZES)
    opt = make_optimizer(net.parameters(), "adam", lr=1e-3)  # the framework's optimizer (fused Adam)
    objective = torch.compile(OBJECTIVES["symmetric"]) if compiled else OBJECTIVES["symmetric"]
    return plain_loop_epoch(dm, lambda x, y: objective(net, x, y)["loss"], opt)


def data_epoch(args, binarize: str = "dynamic") -> float:
    dm = MNISTDataModule(data_dir=mnist_dir(args), binarize=binarize)
    dm.setup("fit")
    t0 = time.perf_counter()
    for x, _ in dm.train_dataloader():
        dm.transform(x, train=True)
    return time.perf_counter() - t0


# ---- evaluation: log_likelihood vs matmul of the same shapes ----
def eval_inputs(args, n: int):
    dm = MNISTDataModule(data_dir=mnist_dir(args))
    x, y = dm.split_tensors("test")
    from lightning_modules import fixed_binarize

    return fixed_binarize(dm.transform(x[:n], train=False)), y[:n]


def ll_matmul_flops(sizes: list[int], samples: int) -> float:
    """Matmul FLOPs of the importance-sampled estimate per sample: W1^T down to pixels, up and down between
    hidden layers (the per-example terms are negligible)."""
    d = sizes[:-1]
    per = d[1] * d[0] + 2 * sum(d[j] * d[j + 1] for j in range(1, len(d) - 1))
    return 2.0 * per * samples


def matmul_seconds(net: CoupledSigmoidNet, rows: int, samples: int) -> float:
    """torch.matmul on the shapes log_likelihood multiplies, as many rows in total."""
    h = [torch.rand(rows, s).round() for s in net.sizes[:-1]]
    todo, t0 = samples, time.perf_counter()
    while todo > 0:
        torch.matmul(h[1], net.W[0])
        for j in range(1, net.num_layers - 1):
            torch.matmul(h[j], net.W[j].t())
            torch.matmul(h[j + 1], net.W[j])
        todo -= rows
    return (time.perf_counter() - t0) * samples / (samples - todo)


# ---- memory: fresh processes ----
