"""Callbacks a DDP test passes with ``--trainer.callbacks+=``: they run inside the launched ranks."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class SkewThenCheckRanks(pl.Callback):
    """Makes rank 1 start RBM pretraining from other weights (callbacks' ``on_fit_start`` runs before the
    module's), then checks at the first training step's start that every rank holds rank 0's weights: on CPU the
    ranks would otherwise pretrain identically, and a missing broadcast would pass unseen."""

    def on_fit_start(self, trainer, pl_module):
        if trainer.global_rank == 1:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.add_(0.5 * torch.randn_like(p))

    def on_train_start(self, trainer, pl_module):
        for name, p in pl_module.named_parameters():
            gathered = pl_module.all_gather(p.detach())
            if not torch.equal(gathered[0], gathered[1]):
                raise RuntimeError(f"after pretraining the ranks disagree on {name}")
