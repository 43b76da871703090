"""RBM pretraining as a step of a fit (``GenerativeLearner.on_fit_start``): the strategies it allows, the
``fast_dev_run`` limit, DDP's broadcast, a SIGTERM during it and its log lines. The math is ``rbm.py``.

A SIGTERM: Lightning registers its own handler only after ``on_fit_start``, so the default action would end
the process at once, with status -15 and no word. Within :func:`sigterm_requests` a SIGTERM only sets a flag,
pretraining polls it between batches and stops, and Lightning's ``SIGTERMException`` ends the fit with status 0
and the graceful-stop callback's one line (nothing is saved: no step was taken). Under DDP the signal reaches one
rank (the launcher); the poll is then an all-reduce, every ``DDP_POLL_EVERY`` batches (each one syncs the device),
so every rank stops at the same batch and none is left waiting.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import Tensor

from .errors import ConfigError
from .model import CoupledSigmoidNet
from .rbm import pretrain_rbms

DDP_POLL_EVERY = 16  # batches between DDP's all-reduces of the flag: a stop waits at most this many CD steps


def pretrain_in_fit(trainer, net: CoupledSigmoidNet, training_images: Callable[[], tuple[Tensor, Tensor] | None],
                    epochs: int, cd_steps: int, lr: float, seed: int) -> None:
    """Pretrains `net`'s hidden layers on the grey training images (``rbm.pretrain_rbms``), on every rank;
    `training_images()` gives them with their labels, or None if the DataModule cannot."""
    if type(trainer.strategy) not in (SingleDeviceStrategy, DDPStrategy):  # others restore later, or shard
        raise ConfigError(f"model.rbm_pretrain_epochs runs on one device or under DDP, not "
                          f"{type(trainer.strategy).__name__}; use --trainer.strategy ddp or set it to 0")
    train = training_images()
    if train is None:
        raise ConfigError("model.rbm_pretrain_epochs needs a DataModule with split_tensors('train') (the "
                          "MNIST-style DataModules have it); set model.rbm_pretrain_epochs 0")
    x = train[0]
    if trainer.fast_dev_run:  # a quick check of the whole fit: one batch, one epoch per layer
        x, epochs = x[:128], 1
    # every rank pretrains alike (same data, same seed); rank 0's are broadcast: kernels may differ in bits
    with sigterm_requests(trainer) as stop:
        rank_zero_info(f"RBM pretraining: {epochs} epochs of CD-{cd_steps} on {x.shape[0]} images for each of "
                       f"{net.num_layers - 1} hidden layers")
        records = pretrain_rbms(net, x, epochs, cd_steps, lr=lr, seed=seed, should_stop=stop)
        stopped = records is None or stop(now=True)  # a signal after DDP's last vote still stops the fit
    if stopped:
        raise SIGTERMException
    for p in net.parameters() if trainer.world_size > 1 else ():
        torch.distributed.broadcast(p.data, src=0)
    for r in records:
        rank_zero_info(f"RBM pretraining, layer {r['layer']} ({r['sizes'][0]}-{r['sizes'][1]}): reconstruction "
                       f"error {r['reconstruction'][0]:.2f} -> {r['reconstruction'][-1]:.2f} per image, CD-{cd_steps}")


@contextmanager
def sigterm_requests(trainer) -> Iterator[Callable[[], bool]]:
    """Yields ``requested()``: True once a SIGTERM reached this process (under DDP: any rank; every rank must call
    it at the same points; they vote at every ``DDP_POLL_EVERY``-th call, from the first, and when `now`).
    Restores the previous handler on exit. Off the main thread no handler can be set and ``requested()`` stays False."""
    received: list[int] = []
    calls = 0
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum)) if main else None

    def requested(now: bool = False) -> bool:
        nonlocal calls
        if trainer.world_size > 1:
            calls += 1
            if (calls - 1) % DDP_POLL_EVERY and not now:
                return False
            return bool(trainer.strategy.reduce_boolean_decision(bool(received), all=False))
        return bool(received)

    try:
        yield requested
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
