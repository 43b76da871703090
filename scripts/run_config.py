"""Whether a run folder trained what a ``coupled fit`` command line resolves to: the check behind
``make reproduce``'s ``--adopt`` (a finished run made by hand becomes a row instead of being made twice).

A run folder's config.yaml is its last session's: a run resumed across sessions is checked as its last session
ran (each session of `coupled fit --config <folder>/config.yaml --ckpt_path ...` repeats the first's config)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml

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


def config_differences(cli: list[str], config_yaml: Path, cwd: Path) -> list[str]:
    """'key (ran, not wanted)' for each key where the run's saved config differs from what ``coupled CLI``
    resolves to (``--print_config``), up to :data:`WHERE_KEYS`; empty when it is the same recipe."""
    printed = subprocess.run([sys.executable, "-m", "coupled", *cli, "--print_config"], cwd=cwd,
                             capture_output=True, text=True)
    if printed.returncode != 0:
        raise SystemExit(f"coupled {shlex.join(cli)} --print_config failed: {printed.stderr.strip()[-500:]}")
    want, got = recipe_of(yaml.safe_load(printed.stdout)), recipe_of(yaml.safe_load(config_yaml.read_text()))
    own = config_yaml.parent.resolve()
    if got.get("ckpt_path") and own in (cwd / got["ckpt_path"]).resolve().parents:
        got["ckpt_path"] = want.get("ckpt_path")  # the run resumed from its own checkpoint
    if None in (got.get("data.init_args.data_dir"), want.get("data.init_args.data_dir")):
        got["data.init_args.data_dir"] = want.get("data.init_args.data_dir")
    # an option added since the run was made is absent from its config: null, its default, reads the same
    return [f"{k} ({got.get(k)!r}, not {want.get(k)!r})" for k in sorted(want.keys() | got.keys())
            if not _same(want.get(k), got.get(k), cwd)]


def _same(a, b, cwd: Path) -> bool:
    """Equal values, or two spellings (relative, absolute) of one existing file."""
    if a == b:
        return True
    files = isinstance(a, str) and isinstance(b, str) and (cwd / a).exists()
    return files and (cwd / a).resolve() == (cwd / b).resolve()
