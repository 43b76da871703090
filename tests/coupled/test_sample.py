"""`coupled sample` and `coupled.load`: samples from a trained model, for grey and colour data."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import coupled
from coupled.main import main
from coupled.sample import main as sample_main
from lightning_modules import CheckpointError, GenerativeLearner

NAMES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def rgb_ckpt(tmp_path_factory):
    """A tiny model trained for a few steps on 3-class 12x12 RGB images: each class lights one channel."""
    pl.seed_everything(0)
    y = torch.arange(90) % 3
    x = torch.zeros(90, 3, 12, 12)
    x[torch.arange(90), y] = 0.9
    x = x.flatten(1)
    model = GenerativeLearner(hidden_sizes=[8], input_dim=432, num_classes=3, image_shape=(3, 12, 12),
                              class_names=NAMES, lr=0.05, self_consistency_per_class=0)
    t = pl.Trainer(max_epochs=60, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)
    t.fit(model, DataLoader(TensorDataset(x, y), batch_size=30, shuffle=True))
    path = tmp_path_factory.mktemp("rgb") / "model.ckpt"
    t.save_checkpoint(path)
    return path


def test_load_gives_the_trained_model_in_eval_mode(rgb_ckpt):
    model = coupled.load(rgb_ckpt)
    assert not model.training and model.hparams.image_shape == (3, 12, 12) and model.hparams.class_names == NAMES
    saved = torch.load(rgb_ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_load_refuses_bad_references_in_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        coupled.load(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="only inside a Trainer"):
        coupled.load("best")


def test_sample_writes_a_labelled_rgb_grid_and_npz_and_is_seeded(rgb_ckpt, tmp_path):
    stem = sample_main(["--ckpt_path", str(rgb_ckpt), "--classes", "0,2", "--per_class", "4", "--out",
                        str(tmp_path / "a"), "--seed", "3", "--device", "cpu"])
    data = np.load(stem.with_suffix(".npz"))
    assert data["images"].shape == (8, 3, 12, 12) and data["labels"].tolist() == [0] * 4 + [2] * 4
    assert data["means"].shape == (2, 3, 12, 12) and data["class_names"].tolist() == ["red", "blue"]
    assert set(np.unique(data["images"])) <= {0.0, 1.0}
    # the class's own channel is the bright one in its mean image
    assert data["means"][0, 0].mean() > data["means"][0, 2].mean() and data["means"][1, 2].mean() > 0.5
    img = Image.open(stem.with_suffix(".png"))
    assert img.mode == "RGB" and img.height == 2 * 2 * (12 + 2) + 4
    again = sample_main(["--ckpt_path", str(rgb_ckpt), "--classes", "0,2", "--per_class", "4", "--out",
                         str(tmp_path / "b"), "--seed", "3", "--device", "cpu"])
    assert np.array_equal(np.load(again.with_suffix(".npz"))["images"], data["images"])  # same seed, same images
    means = sample_main(["--ckpt_path", str(rgb_ckpt), "--kind", "means", "--out", str(tmp_path / "c")])
    assert not set(np.unique(np.load(means.with_suffix(".npz"))["images"])) <= {0.0, 1.0}


def test_sample_from_a_cli_run_by_wandb_reference(trained_run, monkeypatch, tmp_path, capsys):
    """The grey tiny run of the CLI, by its local W&B reference: image shape and class names from the data."""
    monkeypatch.chdir(trained_run["root"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    sample_main(["--ckpt_path", f"wandb:model-{trained_run['run_id']}:best", "--per_class", "2",
                 "--out", str(tmp_path)])
    data = np.load(next(tmp_path.glob("*.npz")))
    assert data["images"].shape == (20, 1, 8, 8) and len(data["class_names"]) == 10
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("extra, needle", [
    (["--classes", "0,5"], "--classes 5 is out of range: this model has classes 0..2"),
    (["--classes", "a"], "comma-separated class ids"),
    (["--per_class", "0"], "--per_class must be a positive number"),
    (["--kind", "grey"], "invalid choice: 'grey'"),
])
def test_sample_bad_input_is_one_line_exit_2(rgb_ckpt, tmp_path, capsys, extra, needle):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--ckpt_path", str(rgb_ckpt), "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "\n" not in err and err.startswith("coupled: error: ") and needle in err, err


def test_sample_bad_reference_is_one_line_exit_2(tmp_path, capsys):
    for ref in (str(tmp_path / "nope.ckpt"), "wandb:model-abc:newest"):
        with pytest.raises(SystemExit) as info:
            main(["sample", "--ckpt_path", ref, "--out", str(tmp_path)])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and "\n" not in err and err.startswith("coupled: error: "), err
