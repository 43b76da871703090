"""The progress bar: Lightning's TQDM bar, redrawn every N training steps but after every test batch."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import TQDMProgressBar


class EvalProgressBar(TQDMProgressBar):
    """A training step of the paper's model costs a few milliseconds, so redrawing after each one would cost
    as much again (``refresh_rate`` steps per redraw); a test batch costs a second or more (the importance-
    sampled likelihood), so the test bar is redrawn after every batch."""

    def on_test_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        bar = self.test_progress_bar
        if not bar.disable:
            bar.n = batch_idx + 1
            bar.refresh()
