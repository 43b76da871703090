"""Resolving ``--ckpt_path``: plain files, and ``wandb:`` references to a run's model artifact.

A reference reads ``wandb:[[ENTITY/]PROJECT/]model-<run id>[:ALIAS]`` with ALIAS ``latest`` (default),
``best`` or ``vN``. Online (an API key is configured) every rank downloads the artifact itself with
:func:`download_artifact` (Lightning's ``WandbLogger.download_artifact`` runs on rank 0 only, so it is
not used). Offline the reference resolves to the run's local copy, which
:class:`coupled.artifacts.CheckpointArtifacts` keeps in ``<runs_dir>/<run id>/checkpoints/`` with an
``index.json`` that maps versions and aliases to files.

Checkpoints are read with ``torch.load(..., weights_only=True)`` only: a downloaded artifact is untrusted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lightning_modules.errors import CheckpointError

from .checkpoint_io import load_checkpoint_safely
from .index import LocalArtifactIndex, ResumeError

__all__ = ["ArtifactRef", "CheckpointError", "LocalArtifactIndex", "ResumeError", "resolve_ckpt_path"]

#: the key of a checkpoint that holds the W&B run id of the run that wrote it
RUN_ID_KEY = "wandb_run_id"
#: Lightning's own special values of ckpt_path, passed through untouched
SPECIAL_CKPT_PATHS = ("best", "last", "hpc", "registry")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded on the CPU with ``weights_only=True`` (one-line CheckpointError)."""
    return load_checkpoint_safely(path, map_location="cpu")


def checkpoint_run_id(path: str | os.PathLike) -> str | None:
    """The W&B run id stored in a checkpoint by :class:`coupled.artifacts.CheckpointArtifacts`, if any."""
    return checkpoint_meta(path).run_id


class CheckpointMeta(NamedTuple):
    run_id: str | None
    data_identity: dict | None  # GenerativeLearner's ``data_identity``, written since the data check exists
    hparam_names: frozenset[str]  # the model hyperparameters it saved (an older one lacks those added since)


def checkpoint_meta(path: str | os.PathLike) -> CheckpointMeta:
    """What the CLI needs of a checkpoint besides its weights, read once and safely."""
    ckpt = load_checkpoint(path)
    run_id, identity, hparams = ckpt.get(RUN_ID_KEY), ckpt.get("data_identity"), ckpt.get("hyper_parameters")
    return CheckpointMeta(str(run_id) if run_id else None, identity if isinstance(identity, dict) else None,
                          frozenset(hparams) if isinstance(hparams, dict) else frozenset())


# ---- references ----


@dataclass(frozen=True)
class ArtifactRef:
    entity: str | None
    project: str | None
    name: str  # model-<run id>
    alias: str  # latest, best or vN

    @property
    def run_id(self) -> str:
        return self.name[len("model-") :]

    def qualified(self, default_project: str | None = None) -> str:
        """``[entity/]project/name:alias`` as ``wandb.Api().artifact`` takes it."""
        project = self.project or default_project
        parts = [p for p in (self.entity, project) if p]
        return "/".join([*parts, self.name]) + f":{self.alias}"

    def __str__(self) -> str:
        return "wandb:" + self.qualified()


_NAME = re.compile(r"model-[A-Za-z0-9_-]{1,64}")  # fullmatch: `$` would accept a trailing newline
_ALIAS = re.compile(r"latest|best|v\d+")


def is_wandb_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("wandb:")


def parse_ref(value: str) -> ArtifactRef:
    """Parse ``wandb:[[ENTITY/]PROJECT/]model-RUNID[:ALIAS]``."""
    body = value[len("wandb:") :].lstrip("/")
    usage = "expected wandb:[[ENTITY/]PROJECT/]model-<run id>[:latest|:best|:vN]"
    path, _, alias = body.partition(":")
    alias = alias or "latest"
    parts = path.split("/") if path else []
    if not parts or len(parts) > 3 or not all(parts):
        raise ResumeError(f"bad checkpoint reference {value!r}: {usage}")
    name = parts[-1]
    if not _NAME.fullmatch(name):
        raise ResumeError(f"bad checkpoint reference {value!r}: the artifact name must be model-<run id> (a run id "
                          f"of at most 64 letters, digits, '-' or '_'); {usage}")
    if not _ALIAS.fullmatch(alias):
        raise ResumeError(f"bad checkpoint reference {value!r}: the alias must be latest, best or vN; {usage}")
    entity = parts[0] if len(parts) == 3 else None
    project = parts[-2] if len(parts) >= 2 else None
    return ArtifactRef(entity, project, name, alias)


def resolve_local(ref: ArtifactRef, runs_dir: str | os.PathLike) -> Path:
    """The local copy of ``ref`` under ``<runs_dir>/<run id>/checkpoints``."""
    folder = Path(runs_dir) / ref.run_id / "checkpoints"
    index = LocalArtifactIndex(folder)
    if not index.path.is_file():
        raise ResumeError(
            f"{ref} matches nothing: W&B is offline and there is no local copy of {ref.name} "
            f"(looked for {str(index.path)!r}); log in to W&B (`wandb login`), set --runs_dir, or pass a "
            f"checkpoint file"
        )
    data = index.load()
    if ref.project and data.get("project") and ref.project != data["project"]:
        raise ResumeError(
            f"{ref} matches nothing: the local copy of {ref.name} was logged to project "
            f"{data['project']!r}, not {ref.project!r}"
        )
    try:
        return index.resolve(ref.alias)
    except ResumeError as exc:
        raise ResumeError(f"{ref} matches nothing: {exc}") from None


# ---- online: the one function that talks to W&B ----


def download_artifact(qualified_name: str, root: str | os.PathLike) -> Path:
    """Download model artifact ``qualified_name`` (``[entity/]project/model-ID:alias``) into ``root``.

    The only code that needs a W&B server; the tests run it against a stub of ``wandb.Api``. Returns
    the checkpoint file; raises ResumeError (one line) when the artifact does not exist or is not a
    single checkpoint.
    """
    import wandb

    try:
        artifact = wandb.Api().artifact(qualified_name, type="model")
        folder = Path(artifact.download(root=str(root)))
    except Exception as exc:  # noqa: BLE001 - wandb raises CommError, ValueError, ... for "not found"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ResumeError(f"wandb:{qualified_name} matches nothing on W&B: {first}") from exc
    files = sorted(folder.rglob("*.ckpt"))
    if len(files) != 1:
        raise ResumeError(
            f"wandb:{qualified_name} holds {len(files)} .ckpt files (expected exactly one) in {str(folder)!r}"
        )
    return files[0]


def resolve_ckpt_path(
    value: str | None,
    *,
    runs_dir: str | os.PathLike,
    online: bool,
    default_project: str | None,
    rank: int = 0,
) -> str | None:
    """``--ckpt_path`` as a local file (or Lightning's special values, or None).

    ``wandb:`` references are downloaded online (into ``<runs_dir>/<run id>/downloads/<alias>/rank<r>``,
    one folder per process so ranks never race) or resolved to the local copy offline. Other values are
    returned as they are.
    """
    if value is None or value in SPECIAL_CKPT_PATHS:
        return value
    value = str(value)
    if is_wandb_ref(value):
        ref = parse_ref(value)
        if online:
            root = Path(runs_dir) / ref.run_id / "downloads" / ref.alias / f"rank{rank}"
            path = download_artifact(ref.qualified(default_project), root)
        else:
            path = resolve_local(ref, runs_dir)
        return str(path)
    return value
