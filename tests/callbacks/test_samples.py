"""The class-conditional sample grid: layout, PNG file, W&B image, rank 0 only."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import Logger

from callbacks.samples import SampleGrid, grid_image
from lightning_modules import GenerativeLearner


def test_grid_layout_rows_are_classes_mean_first():
    classes, n, shape = 3, 4, (1, 5, 6)
    means = torch.stack([torch.full((30,), 0.25 * c) for c in range(classes)])
    samples = torch.ones(classes, n, 30)
    img = grid_image(means, samples, shape, pad=2)
    assert img.mode == "L"
    assert img.size == ((n + 1) * (6 + 2) + 4, classes * (5 + 2) + 2)
    a = np.asarray(img)
    for c in range(classes):
        top = 2 + c * 7
        assert (a[top : top + 5, 2:8] == round(0.25 * c * 255)).all()  # column 0: the mean image
        assert (a[top : top + 5, 12:18] == 255).all()  # then the samples, after an extra gap
    assert (a[:, 8:12] == 128).all()  # the gap between the mean column and the samples


def test_grid_colour_images():
    img = grid_image(torch.rand(2, 3 * 4 * 4), torch.rand(2, 3, 3 * 4 * 4), (3, 4, 4), scale=2)
    assert img.mode == "RGB" and img.size == (2 * (4 * 6 + 4), 2 * (2 * 6 + 2))


def test_grid_of_pixel_means_is_grey_and_bad_kind_is_refused():
    model = GenerativeLearner(sizes=[30, 6, 3])
    binary = np.asarray(SampleGrid(samples_per_class=4, scale=1).make_grid(model, (1, 5, 6)))
    means = np.asarray(SampleGrid(samples_per_class=4, scale=1, kind="means").make_grid(model, (1, 5, 6)))
    tile = (slice(2, 7), slice(12, 18))  # the first sample of class 0
    assert set(np.unique(binary[tile])) <= {0, 255} and not set(np.unique(means[tile])) <= {0, 255}
    with pytest.raises(ValueError, match="binary or means"):
        SampleGrid(kind="mean")


class WandbLogger(Logger):  # the callback recognises W&B loggers by class name
    def __init__(self):
        super().__init__()
        self.images: list = []

    @property
    def name(self):
        return "stub"

    @property
    def version(self):
        return "0"

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_image(self, key, images, step=None, **kwargs):
        self.images.append((key, images, step, kwargs))


class _Trainer:
    def __init__(self, tmp_path, logger, rank=0):
        self.default_root_dir = str(tmp_path)
        self.loggers = [logger]
        self.global_step = 7
        self.global_rank = rank
        self.datamodule = type("DM", (), {"image_shape": (1, 4, 4)})()


def test_write_png_and_wandb_image(tmp_path):
    model = GenerativeLearner(sizes=[16, 8, 3])
    logger = WandbLogger()
    cb = SampleGrid(samples_per_class=5, scale=1, dirpath=str(tmp_path / "samples"))
    path = cb.write(_Trainer(tmp_path, logger), model, "epoch_0003")
    assert path == tmp_path / "samples" / "epoch_0003.png"
    img = Image.open(path)
    assert img.size == (6 * 6 + 4, 3 * 6 + 2)  # 3 rows (classes) of 1 mean + 5 samples, 4x4 pixels each
    assert set(np.unique(np.asarray(img)[2:6, 10:14])) <= {0, 255}  # samples are binary
    assert logger.images == [("samples", [str(path)], 7, {"caption": ["epoch_0003"]})]
    again = cb.write(_Trainer(tmp_path, logger), model, "again")
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(img))  # re-seeded: same draws


def test_rank_zero_only(tmp_path, monkeypatch):
    from pytorch_lightning.utilities import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    cb = SampleGrid(dirpath=str(tmp_path / "samples"))
    assert cb.write(_Trainer(tmp_path, WandbLogger(), rank=1), GenerativeLearner(sizes=[16, 8, 3]), "x") is None
    assert not (tmp_path / "samples").exists()


def test_every_n_epochs_during_fit(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.rand(40, 16)
    y = torch.arange(40) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=20)
    cb = SampleGrid(every_n_epochs=2, dirpath=str(tmp_path / "s"))
    trainer = pl.Trainer(max_epochs=4, callbacks=[cb], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(tmp_path))
    trainer.fit(GenerativeLearner(sizes=[16, 8, 3]), loader, loader)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["epoch_0001.png", "epoch_0003.png"]
