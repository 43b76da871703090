"""``coupled predict`` writes what it predicts: class probabilities and labels of every image, to the run folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from lightning_modules.files import atomic_write


class PredictionWriter(BasePredictionWriter):
    """Lightning's prediction writer: at the end of ``predict``, ``<dirpath>/predictions.npz`` with ``probs``
    (N, C) of q(y|x), ``pred`` (N,) and ``index`` (N,) (the image's position in the predicted split); with
    several processes each rank writes ``predictions_rank<r>.npz`` for its share. Says where in one line."""

    def __init__(self, dirpath: str | os.PathLike):
        super().__init__(write_interval="epoch")
        self.dirpath = Path(dirpath)
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer, pl_module, predictions: Any, batch_indices: Any) -> None:
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        indices = batch_indices[0] if batch_indices and isinstance(batch_indices[0], list) else batch_indices
        probs = torch.cat([p.float().cpu() for p in batches]) if batches else torch.empty(0)
        index = np.concatenate([np.asarray(list(i), dtype=np.int64) for i in indices]) if indices else None
        if index is None or len(index) != len(probs):  # a sampler that reports no indices: loader order
            index = np.arange(len(probs))
        name = "predictions.npz" if trainer.world_size == 1 else f"predictions_rank{trainer.global_rank}.npz"
        self.dirpath.mkdir(parents=True, exist_ok=True)
        self.path = self.dirpath / name
        with atomic_write(self.path) as f:
            np.savez(f, probs=probs.numpy(), pred=probs.argmax(-1).numpy(), index=index)
        print(f"coupled predict: wrote {len(probs)} predictions to {self.path}", flush=True)
