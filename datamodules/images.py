"""Loading a hub image-classification dataset, decoding it once to uint8 tensors, and caching that on disk.

Everything here is independent of Lightning; :class:`datamodules.HFImageDataModule` glues it together.

Layout of a decoded split: ``x`` uint8 ``(N, C*H*W)`` flattened channel-first (C, H, W), ``y`` int64 ``(N,)``.
Grey images (PIL modes ``L``, ``1``, ``I;16`` ...) give C=1, colour ones (``RGB``, ``RGBA``, ``P`` ...) C=3.
"""

from __future__ import annotations

import io
import os
import re
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.errors import DataError

#: bump when the cached tensor layout changes, so old cache files are ignored
CACHE_VERSION = 1

_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def default_cache_dir() -> Path:
    """``$COUPLED_CACHE`` if set, else ``~/.cache/coupled``."""
    env = os.environ.get("COUPLED_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/coupled").expanduser()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------------
# finding and loading the dataset
# ----------------------------------------------------------------------------------------------------


def mirror_subdir_name(name: str) -> str:
    """Folder name of a dataset inside ``$COUPLED_DATA_DIR``: the last component of the hub name."""
    return name.rstrip("/").split("/")[-1]


def resolve_data_dir(name: str, data_dir: str | None) -> Path | None:
    """The local folder to read, or None to go to the hub.

    ``data_dir`` wins; otherwise ``$COUPLED_DATA_DIR/<last name component>`` when that folder exists.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("COUPLED_DATA_DIR")
    if env:
        candidate = Path(env).expanduser() / mirror_subdir_name(name)
        if candidate.is_dir():
            return candidate
    return None


def load_dataset_dict(name: str, data_dir: str | None) -> tuple[Any, str]:
    """Load the ``DatasetDict`` and return it with a cache key naming its source.

    Raises :class:`DataError` (one line) when it cannot be loaded.
    """
    import datasets

    local = resolve_data_dir(name, data_dir)
    if local is not None:
        if not local.is_dir():
            raise DataError(
                f"data_dir '{local}' does not exist or is not a folder: pass --data.data_dir pointing at a "
                f"folder of the hub's parquet files (e.g. train-00000-of-00001.parquet, "
                f"test-00000-of-00001.parquet)"
            )
        try:
            dsd = datasets.load_dataset(str(local))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a one-line user error
            empty = re.search(r'Instruction "([^"]+)" corresponds to no data', str(exc))
            if empty:
                raise DataError(
                    f"data_dir '{local}' split '{empty.group(1)}' is empty; "
                    f"every split needs at least one example"
                ) from exc
            raise DataError(
                f"could not read a dataset from data_dir '{local}' ({_first_line(exc)}): it should hold the "
                f"hub's parquet files, e.g. train-00000-of-00001.parquet and test-00000-of-00001.parquet"
            ) from exc
        resolved = str(local.resolve())
        digest = uuid.uuid5(uuid.NAMESPACE_URL, resolved).hex[:10]
        key = f"local-{_safe(local.resolve().name)}-{digest}"
        return _as_dict(dsd, f"data_dir '{local}'"), key

    try:
        dsd = datasets.load_dataset(name)
    except Exception as exc:  # noqa: BLE001
        if _is_unreachable(exc):
            raise DataError(
                f"dataset '{name}' could not be loaded from the Hugging Face hub (no connection? "
                f"{_first_line(exc)}) and no local copy was given: pass "
                f"--data.data_dir /path/to/parquet/folder "
                f"(or set COUPLED_DATA_DIR to a folder holding '{mirror_subdir_name(name)}/'; "
                f"HF_HUB_OFFLINE=1 skips the hub when the dataset is in its cache)"
            ) from exc
        raise DataError(
            f"dataset '{name}' could not be loaded ({_first_line(exc)}): check the name, or pass "
            f"--data.data_dir /path/to/parquet/folder"
        ) from exc
    return _as_dict(dsd, f"dataset '{name}'"), _safe(name)


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, FileNotFoundError, TimeoutError, OSError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "DatasetNotFoundError",
            "DataFilesNotFoundError",
            "LocalEntryNotFoundError",
            "OfflineModeIsEnabled",
            "HfHubHTTPError",
            "RequestException",
            "ConnectError",
            "HTTPError",
        }
    )


def _as_dict(dsd: Any, what: str) -> Any:
    import datasets

    if isinstance(dsd, datasets.DatasetDict):
        return dsd
    raise DataError(
        f"{what} did not load as a dataset with splits (got {type(dsd).__name__}); expected train/test"
    )


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "dataset"


# ----------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------


def validate_dataset(dsd: Any, what: str, splits: Sequence[str] = ("train", "test")) -> tuple[int, list[str]]:
    """Check splits, columns and feature types; return ``(num_classes, class_names)``.

    ``num_classes`` comes from the ``ClassLabel`` feature; a plain integer label column must hold exactly the
    class ids ``0..C-1``.
    """
    import datasets

    found_splits = list(dsd.keys())
    for split in splits:
        if split not in dsd:
            raise DataError(
                f"{what} has no '{split}' split (found splits: {', '.join(found_splits) or 'none'}); "
                f"the parquet files must be named like {split}-00000-of-00001.parquet"
            )
    for split in splits:
        ds = dsd[split]
        columns = list(ds.column_names)
        missing = [c for c in ("image", "label") if c not in columns]
        if missing:
            raise DataError(
                f"{what} split '{split}' is missing the column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)} (found columns: {', '.join(columns) or 'none'}); "
                f"this data module needs an 'image' and a 'label' column"
            )
        image_feature = ds.features["image"]
        if not isinstance(image_feature, datasets.Image):
            raise DataError(
                f"{what} split '{split}' column 'image' is {_feature_desc(image_feature)}, not an image "
                f"(datasets.Image) feature; use an image-classification dataset"
            )
        label_feature = ds.features["label"]
        if not (
            isinstance(label_feature, datasets.ClassLabel)
            or (isinstance(label_feature, datasets.Value) and label_feature.dtype.startswith(("int", "uint")))
        ):
            raise DataError(
                f"{what} split '{split}' column 'label' is {_feature_desc(label_feature)}, not a class label "
                f"(ClassLabel or integer); use an image-classification dataset"
            )
        if ds.num_rows == 0:
            raise DataError(f"{what} split '{split}' is empty; every split needs at least one example")

    label_feature = dsd[splits[0]].features["label"]
    if isinstance(label_feature, datasets.ClassLabel):
        names = [str(n) for n in label_feature.names]
        return len(names), names
    seen: set[int] = set()
    for split in splits:
        col = dsd[split].with_format("arrow")[:].column("label")
        if col.null_count:
            raise DataError(
                f"{what} split '{split}' has {col.null_count} missing labels; every image needs one"
            )
        seen.update(int(v) for v in np.unique(col.to_numpy(zero_copy_only=False)))
    # a plain integer column must be the class ids 0..C-1 themselves: max + 1 classes from labels such as
    # {0, 1000000} would build a model of a million classes
    if seen != set(range(len(seen))):
        shown = sorted(seen)
        listing = ", ".join(map(str, shown[:5])) + (", ..." if len(shown) > 5 else "")
        raise DataError(
            f"{what}: the integer labels ({len(seen)} distinct: {listing}) are not the class ids 0..{len(seen) - 1}; "
            f"renumber them 0..C-1 or store the label column as a datasets.ClassLabel"
        )
    return len(seen), [str(i) for i in range(len(seen))]


def _feature_desc(feature: Any) -> str:
    dtype = getattr(feature, "dtype", None)
    return f"{type(feature).__name__}({dtype!r})" if dtype is not None else type(feature).__name__


# ----------------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------------


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"could not write the decoded-image cache {path} ({_first_line(exc)})", stacklevel=3)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
