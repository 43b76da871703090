"""Whether a run folder trained what a ``coupled fit`` command line resolves to: the check behind
``make reproduce``'s ``--adopt`` (a finished run made by hand becomes a row instead of being made twice).

Every session of a run is checked: its run folder keeps each session's config (``sessions/<N>.yaml``,
coupled/run_config.py); a run made before that has only its last session's, config.yaml. A run branched from
another run's ``before_epoch<N>.ckpt`` (callbacks.checkpoint.KeepBeforeLateTerms) is checked twice: its own
config in full, and every session of the source run's for the keys that act before epoch N: without the late
terms (those starting at epoch N or later) and their options (``<term>_*`` for a weight ``<term>_weight``)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from callbacks.checkpoint import KeepBeforeLateTerms
from coupled.run_config import session_configs

# where a run wrote and how it showed progress, not what it trained: the keys (full dotted paths) a run by hand
# may differ in. `ckpt_path` must name the run's own folder (a resumed session), `data_dir` may differ only where one
# side leaves it to the environment (null: $COUPLED_DATA_DIR, or the hub)
WHERE_KEYS = {"runs_dir", "trainer.default_root_dir", "trainer.logger.init_args.save_dir",
              "trainer.logger.init_args.id", "checkpoint.dirpath", "sample_grid.dirpath", "artifacts.run_id",
              "weights_only", "trainer.enable_progress_bar"}


def recipe_of(config: dict, prefix: str = "") -> dict:
    """A run's config flattened to dotted keys, without :data:`WHERE_KEYS`."""
    flat = {}
    for k, v in config.items():
        if isinstance(v, dict):
            flat.update(recipe_of(v, f"{prefix}{k}."))
        elif prefix + k not in WHERE_KEYS:
            flat[prefix + k] = v
    return flat


def resolved_config(cli: list[str], cwd: Path) -> dict:
    """The config ``coupled CLI`` resolves to (``--print_config``), run from `cwd`."""
    printed = subprocess.run([sys.executable, "-m", "coupled", *cli, "--print_config"], cwd=cwd,
                             capture_output=True, text=True)
    if printed.returncode != 0:
        raise SystemExit(f"coupled {shlex.join(cli)} --print_config failed: {printed.stderr.strip()[-500:]}")
    return yaml.safe_load(printed.stdout)


def config_differences(cli: list[str], config_yaml: Path, cwd: Path) -> list[str]:
    """'key (ran, not wanted)' for each key where the run's saved config differs from what ``coupled CLI``
    resolves to (:func:`resolved_config`), up to :data:`WHERE_KEYS`; empty when it is the same recipe."""
    return _run_differences(recipe_of(resolved_config(cli, cwd)), config_yaml.parent, cwd)


def _run_differences(want: dict, folder: Path, cwd: Path, before: int | None = None) -> list[str]:
    """As :func:`config_differences` against the resolved recipe ``want``, for every session of the run in
    ``folder``; with ``before`` = N, for a source run's first N epochs only (the keys of terms that start at N or
    later are left out on both sides)."""
    files = session_configs(folder)
    return [f"session {f.stem}: {d}" if len(files) > 1 else d
            for f in files for d in _differences(want, f, folder.resolve(), cwd, before)]


def _differences(want: dict, config_yaml: Path, own: Path, cwd: Path, before: int | None) -> list[str]:
    got = recipe_of(yaml.safe_load(config_yaml.read_text()))
    source = None
    if got.get("ckpt_path"):
        ckpt = (cwd / got["ckpt_path"]).resolve()
        branched = (KeepBeforeLateTerms.epoch_of(ckpt.name) if before is None and ckpt.parent.name == "checkpoints"
                    else None)
        # the run resumed from its own checkpoint, or branched from a source's
        if own in ckpt.parents or branched is not None:
            got["ckpt_path"] = want.get("ckpt_path")
        if branched is not None and own not in ckpt.parents:
            source = (ckpt.parent.parent, branched)
    if None in (got.get("data.init_args.data_dir"), want.get("data.init_args.data_dir")):
        got["data.init_args.data_dir"] = want.get("data.init_args.data_dir")
    if before is not None:
        want, got = _before(want, before), _before(got, before)
    # an option added since the run was made is absent from its config: null, its default, reads the same
    differ = [f"{k} ({got.get(k)!r}, not {want.get(k)!r})" for k in sorted(want.keys() | got.keys())
              if not _same(want.get(k), got.get(k), cwd)]
    if source:
        folder, n = source
        if not session_configs(folder)[0].is_file():
            return [*differ, f"ckpt_path (branched from {folder}, which has no config.yaml)"]
        differ += [f"{folder} before epoch {n}: {d}" for d in _run_differences(want, folder, cwd, before=n)]
    return differ


def _before(recipe: dict, n: int) -> dict:
    """A flat recipe without the late terms at epoch ``n``: their weights, start epochs and ``<term>_*`` options."""
    starts = "model.objective_start_epochs."
    late = [k[len(starts):] for k, v in recipe.items() if k.startswith(starts) and v is not None and v >= n]
    kwargs = "model.objective_kwargs."
    terms = tuple(kwargs + w.removesuffix("weight") for w in late)
    return {k: v for k, v in recipe.items()
            if not k.startswith(terms) and k not in {starts + w for w in late}}


def _same(a, b, cwd: Path) -> bool:
    """Equal values, or two spellings (relative, absolute) of one existing file."""
    if a == b:
        return True
    files = isinstance(a, str) and isinstance(b, str) and (cwd / a).exists()
    return files and (cwd / a).resolve() == (cwd / b).resolve()
