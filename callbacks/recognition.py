"""Recognition accuracy and self-consistency that do not depend on the number of processes.

Both are torchmetrics synced across ranks at compute time:

* ``val/recognition_acc``: the deterministic recognition pass over the whole validation set. The
  DataModule shards evaluation data without padding (every example on exactly one rank), so the synced
  value equals the single-process one.
* ``val/self_consistency``: the recognition pass on ``per_class`` ancestral samples of each class,
  scored against the class they were generated from. The global list of ``C * per_class`` samples is
  cut into fixed chunks, chunk ``j`` is drawn with a generator seeded by ``(seed, j)`` and handled by rank
  ``j % world``: no sample is drawn twice, and each sample is the same whatever the number of ranks.
"""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
import torch
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.learner import score_samples_sharded


class RecognitionAccuracy(pl.Callback):
    """Logs ``val/recognition_acc`` and ``val/self_consistency``, exact under DDP (see the module doc).

    Args:
        self_consistency_per_class: generated samples per class; 0 switches self-consistency off.
        every_n_epochs: how often self-consistency is measured (recognition accuracy: every epoch).
        seed: seed of the sample generators.
    """

    def __init__(self, self_consistency_per_class: int = 100, every_n_epochs: int = 1, seed: int = 0):
        if self_consistency_per_class < 0 or every_n_epochs < 1:
            raise ValueError("self_consistency_per_class must be >= 0 and every_n_epochs >= 1")
        self.per_class = self_consistency_per_class
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.accuracy: MulticlassAccuracy | None = None
        self.consistency: MulticlassAccuracy | None = None

    def _metrics(self, pl_module: pl.LightningModule) -> tuple[MulticlassAccuracy, MulticlassAccuracy]:
        if self.accuracy is None or self.accuracy.num_classes != pl_module.net.num_classes:
            c = pl_module.net.num_classes
            self.accuracy = MulticlassAccuracy(c, average="micro")
            self.consistency = MulticlassAccuracy(c, average="micro")
        self.accuracy = self.accuracy.to(pl_module.device)
        self.consistency = self.consistency.to(pl_module.device)
        return self.accuracy, self.consistency

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for metric in self._metrics(pl_module):
            metric.reset()

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x, y = batch
        self.accuracy.update(pl_module.net.recognize(x), y)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        accuracy, consistency = self._metrics(pl_module)
        # compute() syncs the states of all ranks (every rank calls it, even one whose shard is empty);
        # the synced value is the same on every rank, and max of identical values keeps it exact
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
            value = accuracy.compute()
        pl_module.log("val/recognition_acc", value, sync_dist=True, reduce_fx="max")
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0 or trainer.state.fn == "validate"
        if self.per_class and due:
            logits, labels = score_samples_sharded(
                pl_module.net, self.per_class, trainer.global_rank, trainer.world_size, pl_module.device, self.seed
            )
            if labels.numel():  # a rank may get no chunk; its zero state still joins the sync
                consistency.update(logits, labels)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
                value = consistency.compute()
            pl_module.log("val/self_consistency", value, sync_dist=True, reduce_fx="max")
