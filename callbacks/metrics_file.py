"""Every number a run logs, in one file of its run folder: ``<run>/metrics.json``.

Per epoch the validation metrics and the training epoch means (the curves), the seconds each training epoch
took (its validation included), and at the end the test metrics. It is what ``make reproduce`` reads back
from each ``coupled fit`` it
runs, and what a user reads without W&B. Rewritten atomically after every validation and test, by rank 0.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from lightning_modules.files import atomic_write_text


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


class MetricsFile(pl.Callback):
    """Writes ``{"epochs": [{"epoch", "step", "seconds", "val/...", "train/..._epoch"}], "test": {...}}``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.epochs: list[dict[str, Any]] = []
        self.test: dict[str, float | None] = {}
        self._t0: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the epoch's validation (Lightning runs it before this hook): one row with both
        seconds = None if self._t0 is None else time.perf_counter() - self._t0
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "seconds": seconds}
        row.update({k: _number(v) for k, v in trainer.callback_metrics.items()
                    if k.startswith("val/") or (k.startswith("train/") and k.endswith("_epoch"))})
        self.epochs = [e for e in self.epochs if e["epoch"] != row["epoch"]] + [row]
        self._write(trainer)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.test = {k: _number(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        self._write(trainer)

    def state_dict(self) -> dict[str, Any]:  # a resumed run keeps the curves of its earlier sessions
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # merged by epoch: testing the best (an earlier) checkpoint after fit must not drop the later epochs
        rows = {e["epoch"]: e for e in state_dict.get("epochs", [])}
        rows.update({e["epoch"]: e for e in self.epochs})
        self.epochs = [rows[k] for k in sorted(rows)]

    @rank_zero_only
    def _write(self, trainer: pl.Trainer) -> None:
        atomic_write_text(self.path, json.dumps({"epochs": self.epochs, "test": self.test}, indent=1))
