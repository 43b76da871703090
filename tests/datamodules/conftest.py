"""Fixtures: tiny hub-layout parquet datasets (built once per session) and isolated caches."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from tests.datamodules.helpers import make_dataset

datasets.disable_progress_bars()


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf_cache")


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, hf_cache, tmp_path):
    """Keep the tests away from the user's caches and environment."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hf_cache)
    monkeypatch.delenv("COUPLED_DATA_DIR", raising=False)
    monkeypatch.setenv("COUPLED_CACHE", str(tmp_path / "coupled_cache_env"))


@pytest.fixture(scope="session")
def grey_ds(tmp_path_factory) -> dict:
    """10-class 28x28 grey: 60 train, 20 test (flat layout)."""
    return make_dataset(
        tmp_path_factory.mktemp("grey"), n_train=60, n_test=20, size=(28, 28), mode="L", num_classes=10
    )


@pytest.fixture(scope="session")
def rgb_ds(tmp_path_factory) -> dict:
    """3-class 12x12 RGB: 30 train, 9 test (``data/`` layout)."""
    return make_dataset(
        tmp_path_factory.mktemp("rgb"),
        n_train=30,
        n_test=9,
        size=(12, 12),
        mode="RGB",
        num_classes=3,
        layout="data",
        seed=10,
    )


@pytest.fixture
def cache_dir(tmp_path) -> str:
    return str(tmp_path / "cache")
