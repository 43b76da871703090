"""Finding and checking a hub image-classification dataset: the local parquet mirror or the hub itself, and a
one-line DataError for every way a dataset can be unusable. Independent of Lightning."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.errors import DataError


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
