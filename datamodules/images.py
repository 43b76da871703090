"""Decoding a hub image split once to uint8 tensors, and caching that on disk (finding the data: ``hub.py``).

Everything here is independent of Lightning; :class:`datamodules.HFImageDataModule` glues it together.

Layout of a decoded split: ``x`` uint8 ``(N, C*H*W)`` flattened channel-first (C, H, W), ``y`` int64 ``(N,)``.
Grey images (PIL modes ``L``, ``1``, ``I;16`` ...) give C=1, colour ones (``RGB``, ``RGBA``, ``P`` ...) C=3.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.errors import DataError
from datamodules.hub import _first_line, _safe
from lightning_modules.files import atomic_write

#: bump when the cached tensor layout changes, so old cache files are ignored
CACHE_VERSION = 1

_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _target_mode(mode: str) -> str:
    return "L" if mode in _GREY_MODES else "RGB"


_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


def _grey_uint8(img: Any, what: str, i: int) -> np.ndarray:
    """A grey image as uint8 levels 0..255, scaled by what its PIL mode holds: 16-bit levels /257, 32-bit
    integers as 8- or 16-bit levels by their range, floats in [0, 1] (or [0, 255]) by their range.
    ``Image.convert("L")`` would clip 16-bit levels (all but the darkest white) and truncate [0, 1] floats
    to black."""
    if img.mode not in _SIXTEEN_BIT | {"I", "F"}:
        return np.asarray(img if img.mode == "L" else img.convert("L"), dtype=np.uint8)
    arr = np.asarray(img).astype(np.float64)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if img.mode in _SIXTEEN_BIT or (img.mode == "I" and 255 < hi <= 65535 and lo >= 0):
        scale = 255 / 65535
    elif img.mode == "I" and 0 <= lo and hi <= 255:
        scale = 1.0
    elif img.mode == "F" and 0 <= lo and hi <= 1:
        scale = 255.0
    elif img.mode == "F" and 0 <= lo and hi <= 255:
        scale = 1.0
    else:
        raise DataError(f"{what}: image {i} (PIL mode {img.mode}) has values in [{lo:g}, {hi:g}], which this "
                        f"data module cannot read as grey levels; store images as 8-bit (L), 16-bit (I;16) or "
                        f"floats in [0, 1]")
    return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)


def _open(entry: dict) -> Any:
    from PIL import Image

    data = entry.get("bytes")
    if data is not None:
        return Image.open(io.BytesIO(data))
    path = entry.get("path")
    if path:
        return Image.open(path)
    raise ValueError("image entry has neither bytes nor a path")


def decode_split(ds: Any, what: str) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Decode every image of a split into a uint8 tensor ``(N, C*H*W)`` (channel-first flattening).

    All images are converted to one mode: grey (``L``, C=1) or ``RGB`` (C=3), chosen from the first image
    and switched to the other one if most images turn out to be of that kind. All images must have the
    first image's size.
    """
    table = ds.with_format("arrow")[:]
    column = table.column("image")
    entries: list[dict] = []
    for chunk in column.chunks:
        entries.extend(chunk.to_pylist())
    n = len(entries)
    if n == 0:
        raise DataError(f"{what} is empty; every split needs at least one example")

    try:
        first = _open(entries[0])
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{what}: image 0 cannot be decoded ({_first_line(exc)})") from exc
    width, height = first.size

    def run(mode: str) -> tuple[np.ndarray, int]:
        channels = 1 if mode == "L" else 3
        out = np.empty((n, channels * height * width), dtype=np.uint8)
        other = 0
        for i, entry in enumerate(entries):
            try:
                img = _open(entry)
                if img.size != (width, height):
                    raise DataError(
                        f"{what}: image {i} is {img.size[0]}x{img.size[1]} but image 0 is {width}x{height}; "
                        f"this data module needs images of one size"
                    )
                if _target_mode(img.mode) != mode:
                    other += 1
                if mode == "L":
                    arr = _grey_uint8(img, what, i)
                else:  # colour; a grey image of a wide mode is read as grey levels first
                    if img.mode in _SIXTEEN_BIT | {"I", "F"}:
                        from PIL import Image

                        img = Image.fromarray(_grey_uint8(img, what, i), "L")
                    arr = np.asarray(img if img.mode == mode else img.convert(mode), dtype=np.uint8)
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise DataError(f"{what}: image {i} cannot be decoded ({_first_line(exc)})") from exc
            if channels == 3:
                arr = arr.transpose(2, 0, 1)
            out[i] = arr.reshape(-1)
        return out, other

    mode = _target_mode(first.mode)
    out, other = run(mode)
    if other * 2 > n:  # most images are of the other kind: use that mode for all of them
        mode = "RGB" if mode == "L" else "L"
        out, _ = run(mode)
    channels = 1 if mode == "L" else 3
    return torch.from_numpy(out), (channels, height, width)


def read_labels(ds: Any, what: str) -> torch.Tensor:
    col = ds.with_format("arrow")[:].column("label")
    if col.null_count:
        raise DataError(f"{what} has {col.null_count} missing labels; every image needs one")
    return torch.from_numpy(np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64).copy())


# ----------------------------------------------------------------------------------------------------
# disk cache
# ----------------------------------------------------------------------------------------------------


def cache_path(cache_dir: str | os.PathLike, key: str, split: str, fingerprint: str) -> Path:
    return Path(cache_dir) / "hf_images" / key / f"{_safe(split)}-{_safe(fingerprint)}-v{CACHE_VERSION}.pt"


def load_split(ds: Any, key: str, split: str, cache_dir: str | os.PathLike, what: str) -> dict[str, Any]:
    """Decoded split ``{"x", "y", "shape"}`` from the disk cache, decoding (and caching) it on a miss.

    The cache file is keyed by the source key, the split name and the split's ``_fingerprint``; it is
    written atomically (temporary file + ``os.replace``) so concurrent processes never read half a file.
    """
    fingerprint = getattr(ds, "_fingerprint", None)
    path = cache_path(cache_dir, key, split, fingerprint) if fingerprint else None
    if path is not None and path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if (
                isinstance(blob, dict)
                and blob.get("version") == CACHE_VERSION
                and blob["x"].dtype == torch.uint8
                and blob["x"].shape[0] == blob["y"].shape[0] == ds.num_rows
            ):
                blob["shape"] = tuple(int(s) for s in blob["shape"])
                return blob
        except Exception as exc:  # noqa: BLE001 - a broken cache file is rebuilt, not fatal
            warnings.warn(f"ignoring unreadable cache file {path} ({_first_line(exc)})", stacklevel=2)

    x, shape = decode_split(ds, what)
    y = read_labels(ds, what)
    blob = {"version": CACHE_VERSION, "x": x, "y": y, "shape": list(shape)}
    if path is not None:
        _atomic_save(blob, path)
    blob["shape"] = tuple(shape)
    return blob


def _atomic_save(obj: Any, path: Path) -> None:
    try:
        with atomic_write(path, durable=False) as f:  # a cache: a lost write is rebuilt, not worth an fsync
            torch.save(obj, f)
    except OSError as exc:
        warnings.warn(f"could not write the decoded-image cache {path} ({_first_line(exc)})", stacklevel=3)


def shape_str(shape: Any) -> str:
    c, h, w = (int(v) for v in shape)
    return f"{h}x{w}x{c}"


def check_splits(train: dict[str, Any], test: dict[str, Any], num_classes: int, what: str) -> None:
    """Both decoded splits hold images of one shape and labels in [0, num_classes)."""
    if tuple(train["shape"]) != tuple(test["shape"]):
        raise DataError(
            f"{what}: train images are {shape_str(train['shape'])} but test images are "
            f"{shape_str(test['shape'])}; both splits need images of one size and kind"
        )
    for split, blob in (("train", train), ("test", test)):
        y = blob["y"]
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise DataError(
                f"{what} split '{split}' has labels outside [0, {num_classes}) "
                f"(min {int(y.min())}, max {int(y.max())}); unlabeled splits cannot be used"
            )
