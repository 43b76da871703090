"""A new user's first run: no message they cannot act on, and a run's files where Lightning users expect them."""

from __future__ import annotations

import pytest

from coupled.cli import CoupledCLI
from tests.cli_helpers import CONFIGS, run_cli, tiny_args
from tests.conftest import subprocess_env

UNACTIONABLE = ("The anonymous setting has no effect", "git root", "does not exist",
                "litlogger", "Tip: For seamless cloud logging", "isinstance(treespec, LeafSpec)", "Seed set to")


def test_a_tiny_fit_prints_no_message_the_user_cannot_act_on(tmp_path, tiny_data, decoded_cache):
    env = subprocess_env(tmp_path, decoded_cache)
    for key in ("WANDB_SILENT", "WANDB_CONSOLE", "WANDB_DISABLE_GIT"):  # what a fresh clone's user has: W&B talks
        env.pop(key, None)
    env["PYTHONWARNINGS"] = "default"  # show every warning once, as a plain `python` would
    args = ["fit", "--config", str(CONFIGS / "mnist.yaml"), *tiny_args(tiny_data), "--trainer.max_epochs", "1"]
    proc = run_cli(args, env, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "test/acc" in output  # the test after fit ran, so its warnings had their chance
    found = [m for m in UNACTIONABLE if m in output]
    assert not found, (found, output[-4000:])


@pytest.mark.parametrize("runs_dir", [None, "elsewhere"])
def test_default_root_dir_holds_the_run_folder_unless_runs_dir_says_otherwise(cli_env, tiny_data, runs_dir):
    root = cli_env / "my_root"
    extra = ["--runs_dir", str(cli_env / runs_dir)] if runs_dir else []
    cli = CoupledCLI(args=["fit", "--config", str(CONFIGS / "mnist.yaml"), *tiny_args(tiny_data),
                           "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root), *extra])
    parent = cli_env / runs_dir if runs_dir else root
    run = parent / cli.run_id
    assert (run / "config.yaml").is_file() and (run / "checkpoints").is_dir()
    assert not (cli_env / "runs").exists()
    if runs_dir is None:
        assert cli.trainer.default_root_dir == str(run)  # Lightning's own files go into the run folder too
    else:
        assert cli.trainer.default_root_dir == str(root) and not (root / cli.run_id).exists()
