"""Shared fixtures: the tiny parquet dataset, and the uninterrupted reference runs (one per objective, built
once per session) that the resume and crash tests compare against."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch

from tests.reliability import _train

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 4  # x 6 batches of 16 = 24 optimizer steps

datasets.disable_progress_bars()


def clone_state(obj):
    """A deep copy of nested dicts/lists of tensors (optimizer state_dicts included)."""
    return copy.deepcopy(obj)


def assert_bitwise_equal(a, b, where="state"):
    """Same structure, same Python values, tensors equal bit for bit (torch.equal: same dtype and shape)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_bitwise_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """The tiny dataset (see `_train.write_data`), with the `datasets` cache kept beside it."""
    root = _train.write_data(tmp_path_factory.mktemp("reliability_data"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(root / "hf"))
        yield root


@pytest.fixture(scope="session")
def references(tmp_path_factory, data_root):
    """``references(objective)``: fit EPOCHS epochs straight (once per objective): final weights, optimizer
    state, per-step losses, per-epoch metrics."""
    cache: dict[str, dict] = {}

    def get(objective: str = "symmetric") -> dict:
        if objective not in cache:
            root = tmp_path_factory.mktemp(f"reference_{objective}")
            trainer, model, rec, _ = _train.run(str(root), EPOCHS, data_root, objective=objective, every_n_steps=None)
            cache[objective] = {
                "state_dict": clone_state(model.state_dict()),
                "optimizer": clone_state(trainer.optimizers[0].state_dict()),
                "steps": dict(rec.steps),
                "epochs": dict(rec.epochs),
                "global_step": trainer.global_step,
            }
        return cache[objective]

    return get


@pytest.fixture(scope="session")
def reference(references) -> dict:
    """The reference run of the default objective (symmetric)."""
    return references("symmetric")


def start_training(root: Path, data_root: Path, *args: str) -> subprocess.Popen:
    """`python -m tests.reliability._train ROOT EPOCHS --data DATA ...` in a child process (stderr captured)."""
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        HF_DATASETS_CACHE=str(data_root / "hf"),
    )
    env.setdefault("PYTHONHASHSEED", "0")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability._train", str(root), str(EPOCHS), "--data", str(data_root), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
