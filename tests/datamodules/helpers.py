"""Helpers building tiny hub-layout parquet datasets for the data-module tests."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR_ROOT = (REPO_ROOT / ".." / "shared" / "data").resolve()


def make_images(n: int, size: tuple[int, int], mode: str, seed: int) -> list[np.ndarray]:
    """Random uint8 images (H, W) or (H, W, 3); every one distinct."""
    rng = np.random.default_rng(seed)
    h, w = size
    shape = (h, w) if mode == "L" else (h, w, 3)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def write_split(
    path: Path,
    arrays: list[np.ndarray],
    labels: list[int] | None,
    *,
    mode: str | None = None,
    names: list[str] | None = None,
    extra: dict | None = None,
    features: datasets.Features | None = None,
) -> None:
    """Write one split as a hub-style parquet file (``image`` as datasets.Image, ``label`` as ClassLabel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if features is None:
        label = datasets.ClassLabel(names=names) if names is not None else datasets.Value("int64")
        features = datasets.Features({"image": datasets.Image(), "label": label})
    data: dict = {"image": [Image.fromarray(a, mode) if mode else Image.fromarray(a) for a in arrays]}
    if labels is not None:
        data["label"] = labels
    if extra:
        data.update(extra)
    datasets.Dataset.from_dict(data, features=features).to_parquet(str(path))


def make_dataset(
    root: Path,
    *,
    n_train: int,
    n_test: int,
    size: tuple[int, int],
    mode: str,
    num_classes: int,
    layout: str = "flat",
    seed: int = 0,
) -> dict:
    """A dataset folder in the hub layout; returns the arrays and labels that went into it."""
    names = [f"class_{i}" for i in range(num_classes)]
    train_x = make_images(n_train, size, mode, seed)
    test_x = make_images(n_test, size, mode, seed + 1)
    train_y = [(i * 7 + 3) % num_classes for i in range(n_train)]
    test_y = [(i * 5 + 1) % num_classes for i in range(n_test)]
    sub = root / "data" if layout == "data" else root
    write_split(sub / "train-00000-of-00001.parquet", train_x, train_y, mode=mode, names=names)
    write_split(sub / "test-00000-of-00001.parquet", test_x, test_y, mode=mode, names=names)
    return {
        "root": root,
        "names": names,
        "train_x": train_x,
        "train_y": train_y,
        "test_x": test_x,
        "test_y": test_y,
    }


def flat(arrays: list[np.ndarray]) -> np.ndarray:
    """The data module's layout: (N, C*H*W), channel-first."""
    out = []
    for a in arrays:
        out.append((a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).reshape(-1))
    return np.stack(out)


def mirror(name: str) -> Path:
    path = MIRROR_ROOT / name
    if not (path.is_dir() and any(path.glob("*.parquet"))):
        pytest.skip(f"local hub mirror {path} is absent")
    return path
