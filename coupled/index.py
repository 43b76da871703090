"""The local artifact index: ``<runs_dir>/<run id>/checkpoints/{index.json, versions/vN.ckpt}``.

Every checkpoint version :class:`coupled.artifacts.CheckpointArtifacts` logs to W&B is also recorded here with a
local copy, so ``--ckpt_path wandb:model-<run id>:latest|best|vN`` resolves offline too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lightning_modules.errors import CoupledError
from lightning_modules.files import atomic_copy, atomic_write_text

INDEX_NAME = "index.json"
VERSIONS_DIR = "versions"


class ResumeError(CoupledError, ValueError):
    """A ``--ckpt_path`` reference that cannot be resolved."""


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
        if not isinstance(data, dict):
            raise ResumeError(f"the local artifact index {str(self.path)!r} is not a JSON object (it holds a "
                              f"{type(data).__name__}): it was not written by this program; remove it or pass a "
                              f"checkpoint file")
        data.setdefault("versions", [])
        data.setdefault("aliases", {})
        if not isinstance(data["versions"], list) or not isinstance(data["aliases"], dict) or not all(
                isinstance(v, dict) and isinstance(v.get("version"), int) for v in data["versions"]):
            raise ResumeError(f"the local artifact index {str(self.path)!r} is malformed (versions must be a list of "
                              f"objects with an integer version, aliases an object); remove it or pass a "
                              f"checkpoint file")
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
        atomic_copy(source, self.folder / rel)
        data.update(run_id=run_id, project=project or data.get("project"), entity=entity or data.get("entity"))
        data["versions"].append({"version": version, "aliases": list(aliases), "file": rel, **meta})
        for alias in aliases:
            data["aliases"][alias] = version
        self._prune(data, keep)
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
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
