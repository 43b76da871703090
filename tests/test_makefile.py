"""The Makefile targets the README names (dry runs: `make -n`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib.metadata import requires

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


# `make test ARGS=... TEST_WORKERS=...` hands its flags and command-line variables to the make run by a test
OUTER_MAKE = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "ARGS", "TEST_WORKERS", "CONFIG", "DATA_DIR", "REF",
              "VENV", "PYTHON", "TORCH_VERSION", "TORCH_INDEX"}


def _dry(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in OUTER_MAKE}  # what `make test X=...` around us passes on
    proc = subprocess.run(["make", "-n", "-B", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_install_pins_torch_then_installs_the_project():
    out = _dry("install")
    assert "-m venv .venv" in out
    assert out.index('"torch==2.13.0"') < out.index('pip install -c constraints.txt -e ".[dev]"')
    assert '"torch==2.5.1"' in _dry("install", "TORCH_VERSION=2.5.1")


def test_train_runs_the_mnist_config_with_args_and_data_dir():
    out = _dry("train", "DATA_DIR=/some/mirror", "ARGS=--trainer.max_epochs 3")
    assert "COUPLED_DATA_DIR=/some/mirror .venv/bin/coupled fit --config configs/mnist.yaml " \
           "--trainer.max_epochs 3" in out
    assert "pip install" in out  # installs when needed


def test_train_without_a_mirror_uses_the_hub():
    out = _dry("train", "DATA_DIR=")
    assert "COUPLED_DATA_DIR" not in out and "coupled fit --config configs/mnist.yaml" in out


def test_resume_test_lint():
    assert "--ckpt_path wandb:model-abc:best" in _dry("resume", "REF=wandb:model-abc:best")
    assert ".venv/bin/python -m pytest -n 2" in _dry("test")  # two xdist workers by default ...
    assert " -n " not in _dry("test", "TEST_WORKERS=0") and "-n 4" in _dry("test-slow", "TEST_WORKERS=4")  # ... or not
    assert "ruff check" in _dry("lint")
    assert "-m scripts.bench" in _dry("bench") and "-m scripts.reproduce" in _dry("reproduce", "QUICK=1")


def test_install_and_ci_use_the_constraints_that_pin_the_dependencies():
    """A rebuilt environment must be the one the reports ran in: every dependency pinned, torch left to its own pin."""
    assert '-m pip install -c constraints.txt -e ".[dev]"' in _dry("install")
    assert "-c constraints.txt" in (REPO_ROOT / ".ci" / "run").read_text()
    lines = [ln for ln in (REPO_ROOT / "constraints.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    pins = {req.name.lower(): req.specifier for req in map(Requirement, lines)}
    assert all(len(spec) == 1 and next(iter(spec)).operator == "==" for spec in pins.values())
    assert "torch" not in pins  # TORCH_VERSION / TORCH_INDEX choose the build
    for req in map(Requirement, requires("coupled")):  # pyproject's dependencies and extras, as installed
        if req.name == "torch":
            continue
        pinned = next(iter(pins[req.name.lower()])).version
        assert req.specifier.contains(pinned), f"constraints.txt pins {req.name}=={pinned}, outside {req.specifier}"
