"""The DataModule's options, checked before anything is loaded: one DataError line per bad value."""

from __future__ import annotations

from typing import Any

from datamodules.errors import DataError
from lightning_modules.errors import is_int

BINARIZE_MODES = ("dynamic", "static", "none")


def default_eval_batch_size(batch_size: int) -> int:
    """Validation's batch when none is given: evaluation keeps no activations for a backward pass."""
    return max(1024, batch_size)


def check_options(batch_size: Any, eval_batch_size: Any, test_batch_size: Any, val_size: Any, binarize: Any,
                  train_size: Any) -> int | float:
    """Refuse a bad option in one line; returns `val_size` as a count or a fraction (5000.0 from YAML: 5000)."""
    if binarize not in BINARIZE_MODES:
        raise DataError(
            f"binarize must be one of {', '.join(BINARIZE_MODES)}, not {binarize!r}; fix --data.binarize"
        )
    if not (is_int(batch_size) and batch_size >= 1):
        raise DataError(
            f"batch_size must be a positive integer, not {batch_size!r}; fix --data.batch_size"
        )
    if eval_batch_size is not None and not (is_int(eval_batch_size) and eval_batch_size >= 1):
        raise DataError(
            f"eval_batch_size must be a positive integer or null, not {eval_batch_size!r}; "
            f"fix --data.eval_batch_size"
        )
    if not (is_int(test_batch_size) and test_batch_size >= 1):
        raise DataError(f"test_batch_size must be a positive integer, not {test_batch_size!r}; "
                        f"fix --data.test_batch_size")
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise DataError(f"val_size must be an int or a fraction, not {val_size!r}; fix --data.val_size")
    if isinstance(val_size, float) and val_size >= 1.0 and val_size.is_integer():
        val_size = int(val_size)  # e.g. 5000.0 from a config file: a count
    if isinstance(val_size, float) and not 0.0 <= val_size < 1.0:
        raise DataError(
            f"val_size {val_size} as a fraction must be in [0, 1) (or give a number of images); "
            f"fix --data.val_size"
        )
    if isinstance(val_size, int) and val_size < 0:
        raise DataError(f"val_size must not be negative (got {val_size}); fix --data.val_size")

    if train_size is not None and not (is_int(train_size) and train_size >= 1):
        raise DataError(f"train_size must be a positive integer or null, not {train_size!r}; "
                        f"fix --data.train_size")
    return val_size


def split_sizes(n_all: int, val_size: int | float, train_size: int | None, batch_size: int, what: str
                ) -> tuple[int, int]:
    """(training, validation) image counts: validation is the last `val_size` of the `n_all` training images."""
    n_val = int(round(val_size * n_all)) if isinstance(val_size, float) else int(val_size)
    if n_val >= n_all:
        raise DataError(
            f"val_size {val_size} leaves no training images ({what} has {n_all} training images); "
            f"lower --data.val_size"
        )
    n_train = n_all - n_val
    if train_size is not None:  # a quick run on the first train_size training images
        n_train = min(n_train, train_size)
    if batch_size > n_train:
        raise DataError(
            f"batch_size {batch_size} is larger than the {n_train} training examples; lower --data.batch_size"
        )
    return n_train, n_val
