"""Crash-safe checkpoint files and safe, clearly failing checkpoint loading.

* :class:`AtomicCheckpointIO` (a Lightning ``CheckpointIO`` plugin:
  ``Trainer(plugins=[AtomicCheckpointIO()])``) writes every checkpoint to a temporary file in the
  target's directory, flushes and ``fsync``s it, ``os.replace``s it onto the target and ``fsync``s the
  directory. A ``kill -9`` or a power cut at any
  moment leaves the target either the complete old file or the complete new one, never a torn one.
  It loads with ``torch.load(..., weights_only=True)`` (no arbitrary code from a pickled file) and turns
  every failure into a one-line :class:`CheckpointError`.
* :func:`load_checkpoint_safely` is the same loading for other code (scripts, resume logic).
* :func:`check_compatible` (from ``lightning_modules``, re-exported) says in one line why a checkpoint
  does not fit a model.

Lightning 2.6's own checkpoints (hyper_parameters as a plain dict, loops, optimizer and scheduler
state_dicts, callback states, ``pytorch-lightning_version``) hold only tensors, numbers, strings,
lists and dicts, so they load under ``weights_only=True`` as they are. The few harmless non-tensor types
that configs put into hyper-parameters (``pathlib`` paths, jsonargparse ``Namespace``, Lightning's
``AttributeDict``) are allow-listed by :func:`allow_config_types` (see there).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

from lightning_modules.compat import check_compatible
from lightning_modules.errors import CheckpointError
from lightning_modules.files import atomic_write

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "allow_config_types",
    "atomic_torch_save",
    "check_compatible",
    "load_checkpoint_safely",
]

# --------------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------------
def _is_local(path: _PATH) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _local(path: _PATH) -> str:
    s = os.fspath(path)
    return s[len("file://") :] if s.startswith("file://") else s


def atomic_torch_save(obj: Any, path: _PATH) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at `path` (:func:`atomic_write`)."""
    with atomic_write(_local(path)) as f:
        torch.save(obj, f)


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------
_ALLOWED_CONFIG_TYPES_ADDED = False


def allow_config_types() -> None:
    """Allow-list, for ``weights_only`` loading, the harmless config types found in hyper-parameters.

    ``pathlib`` paths, jsonargparse's ``Namespace`` and Lightning's ``AttributeDict`` are plain containers
    of data whose unpickling runs no user code. Better still, keep hyper-parameters plain (str, not Path;
    dict, not Namespace); this only keeps checkpoints written before that loadable. Idempotent.
    """
    global _ALLOWED_CONFIG_TYPES_ADDED
    if _ALLOWED_CONFIG_TYPES_ADDED:
        return
    import pathlib

    from lightning_fabric.utilities.data import AttributeDict

    types: list = [
        pathlib.PosixPath,
        pathlib.WindowsPath,
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        AttributeDict,
    ]
    try:
        from jsonargparse import Namespace

        types.append(Namespace)
    except ImportError:  # pragma: no cover - jsonargparse is a dependency
        pass
    torch.serialization.add_safe_globals(types)
    _ALLOWED_CONFIG_TYPES_ADDED = True


def _describe_load_error(path: str, e: BaseException) -> str:
    text = " ".join(str(e).split())
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return (
            f"checkpoint {path} contains pickled objects of type {m.group(1)} that could run code when "
            f"loaded; refused (weights_only=True): it was not written by this program or is untrusted"
        )
    if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in text:
        m = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
        why = m.group(1).strip() if m else text[:120]
        return (
            f"checkpoint {path} holds pickled data that cannot be loaded safely ({why}): it is corrupted, "
            f"or not a checkpoint written by this program"
        )
    if isinstance(e, EOFError) or "Ran out of input" in text:
        return f"checkpoint {path} is truncated: the file ends early; use an earlier checkpoint"
    if "central directory" in text or "zip archive" in text:
        return (
            f"checkpoint {path} is truncated or corrupted (not a complete zip archive); "
            f"use an earlier checkpoint"
        )
    if "corrupted" in text or "invalid header" in text or "CRC" in text:
        return f"checkpoint {path} is corrupted ({text[:160]}); use an earlier checkpoint"
    return f"checkpoint {path} could not be loaded: {type(e).__name__}: {text[:200]}"


def _verify_local_file(path: str, shown: str, verify_crc: bool) -> None:
    """Cheap structural checks before unpickling: exists, non-empty, a complete zip whose CRCs match."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {shown} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {shown} is a directory, not a checkpoint file")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"checkpoint {shown} cannot be read: {e.strerror or e}") from None
    if size == 0:
        raise CheckpointError(f"checkpoint {shown} is empty (0 bytes): it was never completely written")
    if head == b"PK\x03\x04":  # torch's zip format (the default since torch 1.6)
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip() if verify_crc else None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError):
            raise CheckpointError(
                f"checkpoint {shown} is truncated or corrupted (not a complete zip archive, {size} bytes); "
                f"use an earlier checkpoint"
            ) from None
        if bad is not None:
            raise CheckpointError(
                f"checkpoint {shown} is corrupted: the data of {bad!r} fails its CRC check; "
                f"use an earlier checkpoint"
            )
    elif head[:1] != b"\x80":  # neither a zip nor a (legacy torch) pickle
        raise CheckpointError(
            f"checkpoint {shown} is not a PyTorch checkpoint file "
            f"(it starts with {head!r}, not a zip archive)"
        )


def load_checkpoint_safely(
    path: _PATH,
    map_location: Any = "cpu",
    *,
    require_state_dict: bool = True,
    verify_crc: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; every failure is a one-line :class:`CheckpointError`.

    Checks, in order: the file exists and is not empty; it is a complete zip archive (torch's format)
    whose members match their CRC32 (`verify_crc`; torch itself does not check them, so flipped bytes
    in tensor data would otherwise load silently; costs one extra read of the file); it unpickles
    without unsafe globals; and (`require_state_dict`) it is a dict with a ``state_dict`` of tensors,
    as Lightning writes.
    """
    allow_config_types()
    spath = os.fspath(path)
    local = _is_local(spath)
    if local:
        _verify_local_file(_local(spath), spath, verify_crc)
    try:
        if local:
            with open(_local(spath), "rb") as f:
                ckpt = torch.load(f, map_location=map_location, weights_only=True)
        else:  # remote (fsspec) path: read into memory, then load
            from lightning_fabric.utilities.cloud_io import get_filesystem

            fs = get_filesystem(spath)
            if not fs.exists(spath):
                raise CheckpointError(f"checkpoint {spath} does not exist")
            with fs.open(spath, "rb") as f:
                ckpt = torch.load(io.BytesIO(f.read()), map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - every load failure becomes one clear line
        raise CheckpointError(_describe_load_error(spath, e)) from None
    if require_state_dict:
        _check_structure(spath, ckpt)
    return ckpt


def _check_structure(path: str, ckpt: Any) -> None:
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f"checkpoint {path} is not a Lightning checkpoint: it holds a {type(ckpt).__name__}, not a dict "
            f"with a 'state_dict'"
        )
    if "state_dict" not in ckpt:
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise CheckpointError(
                f"checkpoint {path} is a bare state_dict (a dict of tensors), not a Lightning checkpoint: "
                f"save with trainer.save_checkpoint or load it with model.load_state_dict"
            )
        keys = ", ".join(sorted(map(str, ckpt))[:6]) or "none"
        raise CheckpointError(
            f"checkpoint {path} is not a Lightning checkpoint: it has no 'state_dict' (its keys: {keys})"
        )
    sd = ckpt["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"checkpoint {path} is corrupted: its 'state_dict' is not a dict of tensors")


# Hand-written, not Lightning's TorchCheckpointIO: its local save (an fsspec transaction, temp file then move)
# fsyncs neither the file nor its folder, so a power cut can leave the new name on an empty file; and its load
# does not check the zip's CRCs, so flipped bytes load silently (both tested in reliability/test_checkpoint_io.py).
class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with crash-safe (temp file, fsync, rename) saving and safe, clear loading.

    Use as ``Trainer(plugins=[AtomicCheckpointIO()])``. Loading always uses ``weights_only=True`` unless
    the caller explicitly passes ``weights_only=False`` (a trusted file with pickled objects).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint does not take storage_options")
        if not _is_local(path):  # remote filesystems: Lightning's own (transactional) save
            return super().save_checkpoint(checkpoint, path)
        try:
            atomic_torch_save(checkpoint, path)
        except OSError as exc:  # a full disk, a folder made read-only mid-run, ...: the old file is intact
            raise CheckpointError(f"could not write checkpoint {_local(path)} ({exc.strerror or exc}); the previous "
                                  f"checkpoint there is kept: free space or set --checkpoint.dirpath") from None

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable | Any | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if weights_only is False:  # explicit opt-out for trusted files only
            return super().load_checkpoint(path, map_location=map_location, weights_only=False)
        return load_checkpoint_safely(path, map_location=map_location)
