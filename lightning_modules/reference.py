"""A small CNN trained discriminatively, used only to score generated samples (sample accuracy)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy


class ReferenceCNN(pl.LightningModule):
    """Two conv blocks and a linear read-out; input is flat (B, C*H*W) in [0, 1], like the coupled pair's."""

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10,
                 width: int = 32, lr: float = 1e-3, dropout: float = 0.25):
        super().__init__()
        self.save_hyperparameters()
        C, H, W = image_shape
        self.features = nn.Sequential(
            nn.Conv2d(C, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(dropout),
        )
        self.head = nn.Linear(2 * width * (H // 4) * (W // 4), num_classes)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    @classmethod
    def for_scoring(cls, path: str, map_location="cpu") -> ReferenceCNN:
        """The classifier of a reference checkpoint, read with weights_only=True (a checkpoint is untrusted input),
        in eval mode: what scores generated samples."""
        return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.view(x.shape[0], *self.hparams.image_shape)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_acc.update(self(x), y)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_acc.update(self(x), y)
        self.log("test/acc", self.test_acc)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
