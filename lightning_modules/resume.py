"""Resolving ``--ckpt_path``: plain files, and ``wandb:`` references to a run's model artifact.

A reference reads ``wandb:[[ENTITY/]PROJECT/]model-<run id>[:ALIAS]`` with ALIAS ``latest`` (default),
``best`` or ``vN``. Online (an API key is configured) every rank downloads the artifact itself with
:func:`download_artifact` (Lightning's ``WandbLogger.download_artifact`` runs on rank 0 only, so it is
not used). Offline the reference resolves to the run's local copy, which
:class:`callbacks.CheckpointArtifacts` keeps in ``<runs_dir>/<run id>/checkpoints/`` with an
``index.json`` that maps versions and aliases to files.

Checkpoints are read with ``torch.load(..., weights_only=True)`` only: a downloaded artifact is untrusted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callbacks.checkpoint_io import CheckpointError, load_checkpoint_safely

__all__ = ["ArtifactRef", "CheckpointError", "LocalArtifactIndex", "ResumeError", "resolve_ckpt_path"]

#: the key of a checkpoint that holds the W&B run id of the run that wrote it
RUN_ID_KEY = "wandb_run_id"
#: Lightning's own special values of ckpt_path, passed through untouched
SPECIAL_CKPT_PATHS = ("best", "last", "hpc", "registry")
INDEX_NAME = "index.json"
VERSIONS_DIR = "versions"


class ResumeError(ValueError):
    """A ``--ckpt_path`` reference that cannot be resolved; the message is one line."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded on the CPU with ``weights_only=True`` (one-line CheckpointError)."""
    return load_checkpoint_safely(path, map_location="cpu")


def checkpoint_run_id(path: str | os.PathLike) -> str | None:
    """The W&B run id stored in a checkpoint by :class:`callbacks.CheckpointArtifacts`, if any."""
    run_id = load_checkpoint(path).get(RUN_ID_KEY)
    return str(run_id) if run_id else None


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


# ---- the local copy: <runs_dir>/<run id>/checkpoints/{index.json, versions/vN.ckpt} ----


class LocalArtifactIndex:
    """The versions of a run's model artifact as logged from this machine, with local copies.

    ``index.json``: ``{"run_id", "project", "entity", "versions": [{"version", "aliases", "file", "epoch",
    "step"}], "aliases": {"latest": N, "best": M}}``. ``file`` is relative to the index's folder; it is
    None for a version whose local copy was pruned (the newest ``keep`` versions and those that ``latest``
    and ``best`` point to are kept).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / INDEX_NAME

    def load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"run_id": None, "project": None, "entity": None, "versions": [], "aliases": {}}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ResumeError(f"the local artifact index {str(self.path)!r} cannot be read ({exc})") from exc
        data.setdefault("versions", [])
        data.setdefault("aliases", {})
        return data

    def next_version(self) -> int:
        versions = self.load()["versions"]
        return max((v["version"] for v in versions), default=-1) + 1

    def add(
        self,
        source: str | os.PathLike,
        aliases: list[str],
        *,
        run_id: str,
        project: str | None = None,
        entity: str | None = None,
        keep: int | None = None,
        **meta: Any,
    ) -> int:
        """Copy ``source`` in as the next version with ``aliases``; returns that version number."""
        data = self.load()
        version = self.next_version()
        rel = f"{VERSIONS_DIR}/v{version}.ckpt"
        _atomic_copy(Path(source), self.folder / rel)
        data.update(run_id=run_id, project=project or data.get("project"), entity=entity or data.get("entity"))
        data["versions"].append({"version": version, "aliases": list(aliases), "file": rel, **meta})
        for alias in aliases:
            data["aliases"][alias] = version
        self._prune(data, keep)
        _atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
        return version

    def _prune(self, data: dict[str, Any], keep: int | None) -> None:
        if keep is None:
            return
        pinned = set(data["aliases"].values())
        recent = {v["version"] for v in data["versions"][-max(keep, 0) :]} if keep > 0 else set()
        for entry in data["versions"]:
            if entry.get("file") and entry["version"] not in pinned | recent:
                try:
                    (self.folder / entry["file"]).unlink(missing_ok=True)
                except OSError:
                    continue
                entry["file"] = None

    def resolve(self, alias: str) -> Path:
        """The local file of ``alias`` (latest, best or vN); ResumeError when there is none."""
        data = self.load()
        if alias.startswith("v") and alias[1:].isdigit():
            version = int(alias[1:])
        elif alias in data["aliases"]:
            version = data["aliases"][alias]
        else:
            raise ResumeError(f"no version of this run's model is tagged {alias!r} in {str(self.path)!r}")
        entry = next((v for v in data["versions"] if v["version"] == version), None)
        if entry is None:
            known = ", ".join(f"v{v['version']}" for v in data["versions"]) or "none"
            raise ResumeError(f"version v{version} is not in {str(self.path)!r} (versions: {known})")
        if not entry.get("file") or not (self.folder / entry["file"]).is_file():
            kept = ", ".join(f"v{v['version']}" for v in data["versions"] if v.get("file")) or "none"
            raise ResumeError(
                f"the local copy of version v{version} was pruned (kept: {kept}); resume online, or keep more "
                f"with --artifacts.keep_local_versions"
            )
        return self.folder / entry["file"]


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
