"""Helpers for the tests that drive the `coupled` CLI (in-process through `main`, or as a subprocess)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from coupled.main import main
from tests.conftest import PYTHON, REPO_ROOT, TINY_VAL

CONFIGS = REPO_ROOT / "configs"


def tiny_args(data_dir: Path, *extra: str) -> list[str]:
    """Flags that shrink any config to the tiny data set and a [64, 16, 10] net on the CPU."""
    return [
        "--data.data_dir", str(data_dir),
        "--data.val_size", str(TINY_VAL),
        "--data.batch_size", "32",
        "--data.eval_batch_size", "16",
        "--data.test_batch_size", "16",
        "--model.hidden_sizes", "[16]",
        "--model.lr", "0.05",
        "--model.eval_num_samples", "4",
        "--model.fitted_proposal_steps", "5",
        "--model.self_consistency_per_class", "5",
        "--model.self_consistency_per_class", "5",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1",
        *extra,
    ]


def run_main(args: list[str]) -> None:
    """`coupled ARGS` in this process; a SystemExit other than 0 fails the test with its code."""
    try:
        main(args)
    except SystemExit as exc:  # pragma: no cover - shown as a failure with the code
        if exc.code not in (0, None):
            pytest.fail(f"coupled {' '.join(args)} exited with {exc.code}")


def run_cli(args: list[str], env: dict, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m coupled ARGS` as a subprocess (what Lightning's DDP launcher re-runs)."""
    return subprocess.run(
        [PYTHON, "-m", "coupled", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def csv_metrics(save_dir: Path) -> list[dict[str, str]]:
    """The rows of the single metrics.csv a CSVLogger wrote under ``save_dir``."""
    files = sorted(Path(save_dir).rglob("metrics.csv"))
    assert len(files) == 1, f"expected one metrics.csv under {save_dir}, found {files}"
    with open(files[0]) as f:
        return list(csv.DictReader(f))


def last_value(rows: list[dict[str, str]], key: str) -> float:
    values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    assert values, f"no {key} in the logged metrics"
    return values[-1]


def run_folders(root: Path) -> list[Path]:
    runs = Path(root) / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
