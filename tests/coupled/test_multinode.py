"""Multi-node: two torchrun processes as two nodes (gloo, CPU, 127.0.0.1) run one `coupled fit` to the end and
agree on one run id and one run folder (issue #14)."""

from __future__ import annotations

import json
import socket
import subprocess

from coupled.runs import agree_across_nodes, launcher_run_id
from tests.cli_helpers import CONFIGS, tiny_args
from tests.conftest import PYTHON, subprocess_env


def test_the_launchers_job_id_names_the_run():
    assert launcher_run_id({"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "8"}) == "slurm-4242-0"
    assert launcher_run_id({"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2"}) == "slurm-4242"
    assert launcher_run_id({"SLURM_JOB_ID": "4242"}) is None  # one task (an interactive allocation): own ids
    assert launcher_run_id({"TORCHELASTIC_RUN_ID": "exp/7"}) == "torchrun-exp-7"
    assert launcher_run_id({"TORCHELASTIC_RUN_ID": "none"}) is None  # torchrun's default names no job
    assert launcher_run_id({}) is None
    assert agree_across_nodes("abc", {"WORLD_SIZE": "1"}) == "abc"  # not under torchrun: nothing to agree on


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_share_one_run(tmp_path, tiny_data, decoded_cache):
    env = subprocess_env(tmp_path, decoded_cache)
    env.pop("TORCHELASTIC_RUN_ID", None)
    port = str(_free_port())
    fit = ["fit", "--config", str(CONFIGS / "symmetric.yaml"), *tiny_args(tiny_data), "--trainer.max_epochs", "2",
           "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp",
           "--runs_dir", str(tmp_path / "runs")]
    procs = [
        subprocess.Popen([PYTHON, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                          "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", port,
                          "-m", "coupled", *fit], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    folders = [f for f in (tmp_path / "runs").iterdir() if f.is_dir()]
    assert len(folders) == 1, folders  # each node would otherwise have drawn its own id and folder
    metrics = json.loads((folders[0] / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1] and metrics["test"]["test/acc"] is not None
    assert (folders[0] / "checkpoints" / "last.ckpt").is_file()
