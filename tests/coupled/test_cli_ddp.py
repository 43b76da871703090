"""DDP on CPU: `validate` with 2 processes gives exactly the 1-process metrics (no sample counted twice)."""

from __future__ import annotations

import pytest

from tests.cli_helpers import CONFIGS, csv_metrics, last_value, run_cli, run_folders, run_main, tiny_args
from tests.conftest import subprocess_env

MNIST = str(CONFIGS / "symmetric.yaml")  # the trained run's config (deterministic)
EXACT = ("val/acc", "val/self_consistency")


def _validate_args(trained_run, tiny_data, save_dir: str) -> list[str]:
    ckpt = trained_run["run_dir"] / "checkpoints" / "best.ckpt"
    return ["validate", "--config", MNIST, *tiny_args(tiny_data), "--ckpt_path", str(ckpt),
            "--trainer.logger", "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.save_dir", save_dir]


def test_two_process_validate_equals_one_process(cli_env, trained_run, tiny_data, decoded_cache):
    run_main(_validate_args(trained_run, tiny_data, "csv1"))
    one = csv_metrics(cli_env / "csv1")

    ddp = cli_env / "ddp"
    ddp.mkdir()
    args = _validate_args(trained_run, tiny_data, "csv2") + [
        "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    proc = run_cli(args, subprocess_env(ddp, decoded_cache), ddp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = csv_metrics(ddp / "csv2")

    for key in EXACT:
        assert last_value(two, key) == last_value(one, key), key
    assert 0.2 < last_value(one, "val/acc") < 1.0  # a trained model: the comparison is not trivial
    # the loss is a mean of per-rank means (Lightning's sync_dist): equal up to float rounding only
    assert last_value(two, "val/loss") == pytest.approx(last_value(one, "val/loss"), rel=0.05)
    assert len(run_folders(ddp)) == 1  # both ranks agreed on one run id


def test_test_metrics_after_a_ddp_fit_are_logged_at_the_last_training_step(cli_env, tiny_data, decoded_cache):
    """Issue #14, point 11: under DDP the test after fit ran in a fresh Trainer and logged at step 0.
    The fit also pretrains its hidden layer as an RBM, from other weights on rank 1 (``SkewThenCheckRanks``), which
    then checks that the broadcast of rank 0's pretrained weights left every rank with the same ones."""
    args = ["fit", "--config", MNIST, *tiny_args(tiny_data), "--trainer.max_epochs", "2", "--trainer.devices", "2",
            "--trainer.strategy", "ddp", "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
            "--trainer.logger.save_dir", "csv", "--model.rbm_pretrain_epochs", "1",
            "--trainer.callbacks+=tests.coupled.ddp_probe.SkewThenCheckRanks"]
    proc = run_cli(args, subprocess_env(cli_env, decoded_cache), cli_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("RBM pretraining, layer 1 (64-16)") == 1  # rank zero's line
    rows = csv_metrics(cli_env / "csv")
    train_steps = [int(r["step"]) for r in rows if r.get("train/loss_epoch")]
    test_steps = [int(r["step"]) for r in rows if r.get("test/acc")]
    # as on one process (the issue: training epochs at steps 19 and 39, the test at 40), not at step 0
    assert train_steps and test_steps == [max(train_steps) + 1], (train_steps, test_steps)
