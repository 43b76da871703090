"""Checkpoint artifacts: one version per new checkpoint, aliases latest/best, a local index, the run id."""

from __future__ import annotations

import json

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from coupled.artifacts import CheckpointArtifacts
from coupled.resume import LocalArtifactIndex
from lightning_modules import GenerativeLearner

SCORES = [0.5, 0.4, 0.6, 0.55]  # improves at epochs 0 and 2


class Scripted(GenerativeLearner):
    def on_validation_epoch_end(self):
        self.log("score", SCORES[self.current_epoch])


class _Run:
    id = "run42"

    def __init__(self):
        self.logged: list = []

    def log_artifact(self, artifact, aliases):
        self.logged.append((artifact.name, artifact.type, list(aliases), sorted(artifact.manifest.entries)))


class WandbLogger(Logger):  # recognised by class name, like pytorch_lightning's
    def __init__(self):
        super().__init__()
        self.run = _Run()

    @property
    def experiment(self):
        return self.run

    @property
    def name(self):
        return "stub"

    @property
    def version(self):
        return "run42"

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def _fit(tmp_path, logger, **kwargs):
    x, y = torch.rand(40, 16), torch.arange(40) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=20)
    ckpt_dir = tmp_path / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="score", mode="max", save_top_k=1)
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    artifacts = CheckpointArtifacts(**kwargs)
    trainer = pl.Trainer(max_epochs=len(SCORES), callbacks=[artifacts, best, last], logger=logger,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(tmp_path))
    trainer.fit(Scripted(sizes=[16, 8, 3]), loader, loader)
    return ckpt_dir, artifacts


def test_one_version_per_checkpoint_with_aliases(tmp_path):
    logger = WandbLogger()
    ckpt_dir, _ = _fit(tmp_path, logger, keep_local_versions=None)
    assert logger.run.logged == [
        ("model-run42", "model", ["latest", "best"], ["model.ckpt"]),
        ("model-run42", "model", ["latest"], ["model.ckpt"]),
        ("model-run42", "model", ["latest", "best"], ["model.ckpt"]),
        ("model-run42", "model", ["latest"], ["model.ckpt"]),
    ]
    index = json.loads((ckpt_dir / "index.json").read_text())
    assert [(v["version"], v["epoch"], v["filename"]) for v in index["versions"]] == [
        (0, 0, "best.ckpt"), (1, 1, "last.ckpt"), (2, 2, "best.ckpt"), (3, 3, "last.ckpt")]
    assert index["aliases"] == {"latest": 3, "best": 2}
    best = torch.load(LocalArtifactIndex(ckpt_dir).resolve("best"), weights_only=True)
    assert best["epoch"] == 2 and best["wandb_run_id"] == "run42"
    assert torch.load(LocalArtifactIndex(ckpt_dir).resolve("v1"), weights_only=True)["epoch"] == 1


def test_without_wandb_the_local_index_is_kept_and_the_run_id_comes_from_the_argument(tmp_path):
    ckpt_dir, artifacts = _fit(tmp_path, False, run_id="myrun", keep_local_versions=1)
    assert len(artifacts.logged) == len(SCORES)
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True)["wandb_run_id"] == "myrun"
    files = sorted(p.name for p in (ckpt_dir / "versions").iterdir())
    assert files == ["v2.ckpt", "v3.ckpt"]  # the newest, plus the one `best` points to
