"""Class-conditional sample grids: one row per class, the deterministic mean image, then N ancestral samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.utilities import rank_zero_only

from lightning_modules.errors import ConfigError
from lightning_modules.files import atomic_write
from lightning_modules.loggers import wandb_logger
from lightning_modules.model import SAMPLE_KINDS
from lightning_modules.seeds import stream_generator


def grid_image(
    means: torch.Tensor, samples: torch.Tensor, image_shape: tuple[int, int, int], pad: int = 2, scale: int = 1
) -> Image.Image:
    """A PIL image: row c is ``means[c]``, a gap, then ``samples[c, 0..N-1]``; pixel values in [0, 1].

    means: (C, input_dim); samples: (C, N, input_dim); image_shape: (channels, H, W).
    """
    ch, h, w = image_shape
    classes, n = samples.shape[0], samples.shape[1]
    cols = n + 1
    height = classes * (h + pad) + pad
    width = cols * (w + pad) + 2 * pad  # an extra gap after the mean column
    canvas = np.full((height, width, ch), 0.5, dtype=np.float32)
    tiles = torch.cat([means.unsqueeze(1), samples], 1).reshape(classes, cols, ch, h, w)
    tiles = tiles.detach().float().clamp(0, 1).permute(0, 1, 3, 4, 2).cpu().numpy()
    for r in range(classes):
        for c in range(cols):
            top = pad + r * (h + pad)
            left = pad + c * (w + pad) + (pad if c > 0 else 0)
            canvas[top : top + h, left : left + w] = tiles[r, c]
    pixels = (canvas * 255).round().astype(np.uint8)
    img = Image.fromarray(pixels[..., 0] if ch == 1 else pixels, mode="L" if ch == 1 else "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


class SampleGrid(pl.Callback):
    """Every ``every_n_epochs`` validation epochs (and after testing), draw a class-conditional grid.

    Row ``c`` holds the deterministic backward pass ``generate_mean(c)`` (first column, set apart) and
    ``samples_per_class`` ancestral samples ``sample_down(c)``. The generator is re-seeded with ``seed``
    each time, so grids of different epochs show the same random draws. Rank 0 only; written as PNG to
    ``dirpath`` (default ``<trainer.default_root_dir>/samples``) and logged as the W&B image ``samples``
    when a ``WandbLogger`` is attached.

    Args:
        samples_per_class: N, ancestral samples per row.
        every_n_epochs: how often; 0 switches the grid off.
        seed: seed of the sampling generator.
        scale: integer upscaling of the PNG (nearest neighbour).
        dirpath: output folder.
        kind: ``binary`` (sampled pixels) or ``means`` (pixel means p(x0 = 1 | x1) of the sampled x1, how
            SBN samples are usually shown).
    """

    def __init__(
        self,
        samples_per_class: int = 10,
        every_n_epochs: int = 1,
        seed: int = 0,
        scale: int = 2,
        dirpath: str | None = None,
        kind: str = "binary",
    ):
        if samples_per_class < 1 or every_n_epochs < 0 or scale < 1:
            raise ConfigError(f"sample_grid.samples_per_class and sample_grid.scale must be >= 1 and "
                              f"sample_grid.every_n_epochs >= 0, got {samples_per_class}, {scale}, {every_n_epochs}")
        if kind not in SAMPLE_KINDS:
            raise ConfigError(f"sample_grid.kind must be {' or '.join(SAMPLE_KINDS)}, got {kind!r}")
        self.kind = kind
        self.samples_per_class = samples_per_class
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.scale = scale
        self.dirpath = dirpath
        self.last_path: Path | None = None

    def folder(self, trainer: pl.Trainer) -> Path:
        return Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "samples"

    @torch.no_grad()
    def make_grid(self, pl_module: pl.LightningModule, image_shape: tuple[int, int, int]) -> Image.Image:
        net = pl_module.net
        was_training = net.training
        net.eval()
        try:
            classes = torch.arange(net.num_classes, device=pl_module.device)
            g = stream_generator(self.seed, "sample_grid", device=pl_module.device)
            ys = classes.repeat_interleave(self.samples_per_class)
            samples = net.sample_images(ys, self.kind, g).reshape(net.num_classes, self.samples_per_class, -1)
            means = net.generate_mean(classes)
        finally:
            net.train(was_training)
        return grid_image(means, samples, image_shape, scale=self.scale)

    @rank_zero_only
    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, name: str) -> Path:
        image_shape = _image_shape(trainer, pl_module)
        img = self.make_grid(pl_module, image_shape)
        folder = self.folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        with atomic_write(path) as f:
            img.save(f, format="PNG")
        self.last_path = path
        logger = wandb_logger(trainer.loggers)
        if logger is not None:
            logger.log_image(key="samples", images=[str(path)], step=trainer.global_step, caption=[name])
        return path

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.every_n_epochs == 0:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or trainer.state.fn == "validate":
            self.write(trainer, pl_module, f"epoch_{trainer.current_epoch:04d}")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs:
            self.write(trainer, pl_module, "test")


def _image_shape(trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[int, int, int]:
    dm = getattr(trainer, "datamodule", None)
    shape = getattr(dm, "image_shape", None)
    if shape is None:  # no DataModule: the model's own (GenerativeLearner.image_shape)
        shape = pl_module.image_shape
    return tuple(int(s) for s in shape)
