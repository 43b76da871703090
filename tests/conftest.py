"""Shared fixtures: a tiny hub-layout image dataset, and an isolated offline W&B environment for the CLI.

Other test packages may add fixtures below; keep each one self-contained.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# ---- a tiny dataset: 8x8 grey images, 10 classes, a class-dependent pattern plus noise (learnable) ----

TINY_SHAPE = (8, 8)
TINY_CLASSES = 10
TINY_TRAIN = 300  # the last `TINY_VAL` are the validation set (odd, so 2 ranks get unequal shards)
TINY_VAL = 101
TINY_TEST = 61


def _tiny_images(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
    h, w = TINY_SHAPE
    protos = np.random.default_rng(1234).random((TINY_CLASSES, h, w)) > 0.5
    labels = [int(i % TINY_CLASSES) for i in range(n)]
    images = []
    for y in labels:
        img = np.where(protos[y], 200, 40).astype(np.int16) + rng.integers(-40, 41, (h, w))
        flip = rng.random((h, w)) < 0.1
        img = np.where(flip, 255 - img, img)
        images.append(np.clip(img, 0, 255).astype(np.uint8))
    return images, labels


def write_tiny_dataset(root: Path, seed: int = 0) -> Path:
    """Hub-layout parquet files ``train-00000-of-00001.parquet`` / ``test-...`` under ``root``."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = [f"c{i}" for i in range(TINY_CLASSES)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", TINY_TRAIN), ("test", TINY_TEST)):
        images, labels = _tiny_images(n, rng)
        data = {"image": [Image.fromarray(a, "L") for a in images], "label": labels}
        datasets.Dataset.from_dict(data, features=features).to_parquet(str(root / f"{split}-00000-of-00001.parquet"))
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A folder to pass as ``--data.data_dir``: 300 train (101 of them validation), 61 test, 8x8, 10 classes."""
    import datasets

    datasets.disable_progress_bars()
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def decoded_cache(tmp_path_factory) -> Path:
    """One decoded-image cache for all CLI tests (the first one decodes, the others read)."""
    return tmp_path_factory.mktemp("coupled_cache")


def offline_env(base: Path, cache: Path) -> dict[str, str]:
    """Environment variables that keep W&B offline, quiet and inside ``base``."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DIR": str(base / "wandb_dir"),
        "WANDB_DATA_DIR": str(base / "wandb_data"),
        "WANDB_CACHE_DIR": str(base / "wandb_cache"),
        "WANDB_CONFIG_DIR": str(base / "wandb_config"),
        "COUPLED_CACHE": str(cache),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture
def cli_env(tmp_path, monkeypatch, decoded_cache) -> Path:
    """Run in ``tmp_path`` (so ``runs/`` lands there) with W&B offline and no inherited run id."""
    for key, value in offline_env(tmp_path, decoded_cache).items():
        monkeypatch.setenv(key, value)
    for key in ("WANDB_API_KEY", "COUPLED_RUN_ID", "COUPLED_RUN_ID_OWNER", "COUPLED_DATA_DIR", "LOCAL_RANK",
                "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr(sys, "argv", ["coupled"])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def subprocess_env(base: Path, cache: Path) -> dict[str, str]:
    """os.environ plus :func:`offline_env`, with the repository importable (for ``python -m ...``)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("WANDB_API_KEY", "COUPLED_RUN_ID", "COUPLED_RUN_ID_OWNER", "LOCAL_RANK", "NODE_RANK",
                        "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "COUPLED_DATA_DIR")}
    env.update(offline_env(base, cache))
    env["NETRC"] = str(base / "no-netrc")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable


# ---- one short training run shared by the resume and DDP tests ----


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_data, decoded_cache) -> dict:
    """`coupled fit --config configs/symmetric.yaml` (deterministic) for 2 epochs on the tiny data, W&B offline.

    Returns ``root`` (the folder it ran in: ``root/runs/<run id>/``), ``run_id``, ``run_dir``, and
    ``logged``: every ``(step, metrics)`` the WandbLogger was asked to log (test metrics included).
    Tests that change the run folder copy ``root`` first (see ``copy_run``).
    """
    from pytorch_lightning.loggers import WandbLogger

    from tests.cli_helpers import CONFIGS, run_main, tiny_args

    root = tmp_path_factory.mktemp("trained")
    logged: list[tuple[int | None, dict]] = []
    original = WandbLogger.log_metrics

    def recording(self, metrics, step=None):
        logged.append((step, dict(metrics)))
        return original(self, metrics, step)

    with pytest.MonkeyPatch.context() as mp:
        for key, value in offline_env(root, decoded_cache).items():
            mp.setenv(key, value)
        for key in ("WANDB_API_KEY", "COUPLED_RUN_ID", "COUPLED_RUN_ID_OWNER", "COUPLED_DATA_DIR"):
            mp.delenv(key, raising=False)
        mp.setenv("NETRC", str(root / "no-netrc"))
        mp.chdir(root)
        mp.setattr(WandbLogger, "log_metrics", recording)
        run_main(["fit", "--config", str(CONFIGS / "symmetric.yaml"), *tiny_args(tiny_data),
                  "--trainer.max_epochs", "2", "--sample_grid.every_n_epochs", "1"])
    runs = [p for p in (root / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return {"root": root, "run_id": runs[0].name, "run_dir": runs[0], "logged": logged}


def copy_run(trained: dict, dest: Path) -> Path:
    """A private copy of the trained run's folder tree under ``dest`` (returns ``dest/runs/<run id>``)."""
    import shutil

    shutil.copytree(trained["root"] / "runs", dest / "runs", symlinks=True)
    return dest / "runs" / trained["run_id"]
