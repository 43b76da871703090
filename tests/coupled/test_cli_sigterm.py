"""SIGTERM to `coupled fit`: the checkpoint it saves replaces the run's last.ckpt, `index.json` lists it as
`latest`, and resuming from `wandb:model-<id>:latest` reaches the very weights of an uninterrupted run (issue #14,
point 2), on one process and on two CPU DDP processes. Under DDP the signal goes to the launching process (rank
0), as a scheduler's or a user's `kill` does; Lightning 2.6's own handler hung such a fit (callbacks/shutdown.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.cli_helpers import CONFIGS, tiny_args
from tests.conftest import PYTHON, subprocess_env

EPOCHS = 30  # 7 steps an epoch on the tiny data (4 per rank under DDP): long enough for a polling loop's kill
SHORT = 5  # a run that signals itself (tests/coupled/_term_at.py) at a chosen step has no race to outlast
MID_RUN = {"class_path": "tests.coupled._term_at.TermAt", "init_args": {"epoch": 2, "where": "batch", "batch": 2}}


def _fit(tmp_path, run_id: str, devices: int, *extra: str, epochs: int = EPOCHS) -> list[str]:
    args = ["fit", "--config", str(CONFIGS / "symmetric.yaml"), *tiny_args(tiny_data_dir(tmp_path)),
            "--trainer.max_epochs", str(epochs), "--runs_dir", str(tmp_path / "runs"), "--test_after_fit", "false",
            "--sample_grid.every_n_epochs", "0", *extra]
    if devices > 1:
        args += ["--trainer.devices", str(devices), "--trainer.strategy", "ddp"]
    return [PYTHON, "-m", "coupled", *args]


def tiny_data_dir(tmp_path):
    return tmp_path / "data"


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True, map_location="cpu")["state_dict"]


def _stop_rank_1(tmp_path, env) -> tuple[Path, str]:
    """Start a two-process fit and SIGTERM rank 1 (the launcher's child) from outside, a few epochs in; it must end
    with status 0, one message, and last.ckpt replaced in place. The checkpoints folder, stderr."""
    folder = tmp_path / "runs" / "stopped" / "checkpoints"
    proc = subprocess.Popen(_fit(tmp_path, "stopped", 2), cwd=tmp_path, env={**env, "COUPLED_RUN_ID": "stopped"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # a few epochs in: the index lists at least two versions
        index = folder / "index.json"
        if index.is_file() and len(json.loads(index.read_text()).get("versions", [])) >= 2:
            break
        time.sleep(0.2)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    os.kill(int(children[0]), signal.SIGTERM)  # Lightning's launcher starts rank 1 as its child process
    out, err = proc.communicate(timeout=240)
    _assert_stopped(folder, proc.returncode, err)
    return folder, err


def _assert_stopped(folder: Path, returncode: int, err: str) -> None:
    assert returncode == 0, err[-3000:]
    assert "received SIGTERM: saved checkpoint" in err
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]  # no last-v1.ckpt


def _assert_latest_is_the_sigterm_save(folder: Path, steps: int, err: str) -> None:
    """The index's `latest` is the SIGTERM save, mid-run: last.ckpt, or best.ckpt at the same step when the signal
    came at an epoch's end (the stop waits for its validation, whose best save is that step)."""
    index = json.loads((folder / "index.json").read_text())
    latest = next(v for v in index["versions"] if v["version"] == index["aliases"]["latest"])
    saved = torch.load(folder / "last.ckpt", weights_only=True, map_location="cpu")
    assert latest["step"] == saved["global_step"] < steps, (index, err[-2000:])
    if latest["filename"] != "last.ckpt":
        best = torch.load(folder / "best.ckpt", weights_only=True, map_location="cpu")
        assert latest["filename"] == "best.ckpt" and best["global_step"] == saved["global_step"], index


def test_sigterm_to_a_non_zero_rank_stops_every_rank_at_one_step(tmp_path, tiny_data, decoded_cache):
    tiny_data_dir(tmp_path).symlink_to(tiny_data, target_is_directory=True)
    folder, err = _stop_rank_1(tmp_path, subprocess_env(tmp_path, decoded_cache))
    _assert_latest_is_the_sigterm_save(folder, EPOCHS * 4, err)


@pytest.mark.parametrize("devices", [1, 2], ids=["one_process", "ddp"])
def test_sigterm_checkpoint_is_latest_and_resumes_exactly(tmp_path, tiny_data, decoded_cache, devices):
    """The signal reaches the launching process (rank 0) mid-epoch, at the start of epoch 2's third batch."""
    tiny_data_dir(tmp_path).symlink_to(tiny_data, target_is_directory=True)
    env = subprocess_env(tmp_path, decoded_cache)
    steps = SHORT * (7 if devices == 1 else 4)
    stopped = subprocess.run(_fit(tmp_path, "stopped", devices, f"--trainer.callbacks+={json.dumps(MID_RUN)}",
                                  epochs=SHORT), cwd=tmp_path, env={**env, "COUPLED_RUN_ID": "stopped"},
                             capture_output=True, text=True, timeout=300)
    folder = tmp_path / "runs" / "stopped" / "checkpoints"
    _assert_stopped(folder, stopped.returncode, stopped.stderr)
    _assert_latest_is_the_sigterm_save(folder, steps, stopped.stderr)
    saved = torch.load(folder / "last.ckpt", weights_only=True, map_location="cpu")["global_step"]
    assert saved > 2 * steps // SHORT, stopped.stderr[-2000:]  # after the signal, inside epoch 2

    resumed = subprocess.run(_fit(tmp_path, "stopped", devices, "--ckpt_path", "wandb:model-stopped:latest",
                                  epochs=SHORT), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = subprocess.run(_fit(tmp_path, "whole", devices, epochs=SHORT), cwd=tmp_path,
                           env={**env, "COUPLED_RUN_ID": "whole"}, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    a, b = _weights(folder / "last.ckpt"), _weights(tmp_path / "runs" / "whole" / "checkpoints" / "last.ckpt")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("devices", [1, 2], ids=["one_process", "ddp"])
def test_sigterm_during_rbm_pretraining_stops_with_one_line_and_status_0(tmp_path, tiny_data, decoded_cache,
                                                                          devices):
    """Pretraining runs in on_fit_start, before Lightning's own SIGTERM handler exists: the default action ended
    the process with -15 and no word (seen before lightning_modules/pretraining.py). Now it stops at the next
    batch; under DDP the signal reaches the launcher only, and both ranks stop."""
    tiny_data_dir(tmp_path).symlink_to(tiny_data, target_is_directory=True)
    env = {**subprocess_env(tmp_path, decoded_cache), "COUPLED_RUN_ID": "pre"}
    proc = subprocess.Popen(_fit(tmp_path, "pre", devices, "--model.rbm_pretrain_epochs", "1000000"), cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    while "RBM pretraining: 1000000 epochs" not in seen:  # printed inside the window that catches the signal
        line = proc.stdout.readline()
        assert line, seen[-3000:]  # the fit ended before pretraining began
        seen += line
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, (seen + out)[-3000:]
    assert out.count("received SIGTERM before the first training step: no checkpoint saved") == 1, out[-3000:]
    assert "reconstruction error" not in out  # it stopped inside pretraining, not after it
    assert not list((tmp_path / "runs" / "pre").rglob("*.ckpt"))


@pytest.mark.parametrize("where", ["last_batch", "validation"])
def test_ddp_sigterm_at_an_epochs_end_validates_that_epoch_then_stops(tmp_path, tiny_data, decoded_cache, where):
    """Rank 1 gets the signal in epoch 1's last batch or its validation: both ranks finish that validation,
    save at the epoch's end and stop; the resumed fit validates every later epoch, none twice."""
    tiny_data_dir(tmp_path).symlink_to(tiny_data, target_is_directory=True)
    env = {**subprocess_env(tmp_path, decoded_cache), "COUPLED_RUN_ID": "stopped"}
    term = json.dumps({"class_path": "tests.coupled._term_at.TermAt", "init_args": {"where": where, "rank": 1}})
    short = ["--trainer.max_epochs", "4"]
    stopped = subprocess.run(_fit(tmp_path, "stopped", 2, *short, f"--trainer.callbacks+={term}"), cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 0 and "received SIGTERM: saved checkpoint" in stopped.stderr, stopped.stderr[-3000:]
    run = tmp_path / "runs" / "stopped"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2 * 4
    validated = [e["epoch"] for e in json.loads((run / "metrics.json").read_text())["epochs"] if "val/loss" in e]
    assert validated == [0, 1], stopped.stderr[-2000:]
    resumed = subprocess.run(_fit(tmp_path, "stopped", 2, *short, "--ckpt_path", "wandb:model-stopped:latest"),
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    validated = [e["epoch"] for e in json.loads((run / "metrics.json").read_text())["epochs"] if "val/loss" in e]
    assert validated == [0, 1, 2, 3]
