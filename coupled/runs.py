"""One run, one id, one folder: how the CLI names a run and decides whether W&B logs online.

A run's id is the W&B run id (also used when W&B is not the logger): it names the run folder
``<runs_dir>/<run id>/`` (checkpoints/, samples/, config.yaml, sessions/, wandb/) and the model artifact
``model-<run id>``. It is decided once, by the process the user started, and handed to the processes
Lightning's DDP launcher starts through the environment, so every rank agrees on it. On several nodes it is the
launcher's job id (SLURM, torchrun ``--rdzv-id``), or rank 0's id shared through torchrun's store.
"""

from __future__ import annotations

import netrc
import os
import secrets
import string
from pathlib import Path
from urllib.parse import urlparse

from lightning_modules.errors import ConfigError

#: the environment variable that carries the run id to DDP child processes (or that a user may set)
RUN_ID_ENV = "COUPLED_RUN_ID"
#: the pid of the process that set RUN_ID_ENV itself; a process that finds its own pid there made the id
RUN_ID_OWNER_ENV = "COUPLED_RUN_ID_OWNER"

_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id() -> str:
    """An 8-character lowercase base-36 id, like W&B's own."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))


def inherited_run_id() -> str | None:
    """The run id this process was handed through the environment, if any.

    DDP children inherit ``COUPLED_RUN_ID`` from the launching process; a user may also set it. An id
    this very process exported earlier (a second ``main()`` call in one Python process) is not inherited.
    """
    run_id = os.environ.get(RUN_ID_ENV)
    if not run_id or os.environ.get(RUN_ID_OWNER_ENV) == str(os.getpid()):
        return None
    return run_id


def launcher_run_id(environ: dict | None = None) -> str | None:
    """The job's id from the launcher, the same on every node: SLURM's job (and step) id for a job step of several
    tasks, or torchrun's rendezvous id (``--rdzv-id``; torchrun's default ``none`` names no job)."""
    env = os.environ if environ is None else environ
    job, step = env.get("SLURM_JOB_ID"), env.get("SLURM_STEP_ID")
    tasks = env.get("SLURM_NTASKS", "1")
    if job and job.isdigit() and tasks.isdigit() and int(tasks) > 1:  # one task: runs in an allocation differ
        return f"slurm-{job}" + (f"-{step}" if step and step.isdigit() else "")
    rdzv = env.get("TORCHELASTIC_RUN_ID", "")
    if rdzv and rdzv != "none":
        return "torchrun-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in rdzv)[:55]
    return None


def agree_across_nodes(run_id: str, environ: dict | None = None, timeout_s: float = 300) -> str:
    """Under torchrun with several processes, rank 0's id for every rank, through torchrun's own store.

    Each node's process decides an id before any process group exists; without a launcher job id each would draw
    its own. torchrun's agent on the master node hosts a key-value store at MASTER_ADDR:MASTER_PORT that its
    workers may use (TORCHELASTIC_USE_AGENT_STORE): rank 0 puts its id there, the others read it.
    """
    env = os.environ if environ is None else environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true" or int(env.get("WORLD_SIZE", "1")) < 2:
        return run_id
    from datetime import timedelta

    from torch.distributed import TCPStore

    store = TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                     timeout=timedelta(seconds=timeout_s))
    key = f"coupled/run_id/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if int(env.get("RANK", "0")) == 0:
        store.set(key, run_id)
        return run_id
    return store.get(key).decode()


def export_run_id(run_id: str) -> None:
    """Hand the run id to the processes this one starts (Lightning's DDP launcher copies os.environ)."""
    if os.environ.get(RUN_ID_ENV) == run_id and os.environ.get(RUN_ID_OWNER_ENV) is None:
        return  # the user's (or the parent's) own setting: leave it as it is
    os.environ[RUN_ID_ENV] = run_id
    os.environ[RUN_ID_OWNER_ENV] = str(os.getpid())


def check_run_id(run_id: str) -> str:
    if not run_id or any(c not in _ALPHABET + "-_" for c in run_id.lower()) or len(run_id) > 64:
        raise ConfigError(
            f"run id {run_id!r} is not usable: use letters, digits, '-' and '_' only (at most 64 characters)"
        )
    return run_id


def run_dir(runs_dir: str | os.PathLike, run_id: str) -> Path:
    return Path(runs_dir) / run_id


# ---- W&B: online or offline, never a prompt ----


def wandb_api_key_configured(environ: dict | None = None) -> bool:
    """True when W&B has an API key: ``WANDB_API_KEY``, or a netrc entry for the W&B host."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    path = env.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def configure_wandb_mode(environ: dict | None = None) -> str:
    """Decide W&B's mode once, before anything imports wandb, and put it in the environment.

    ``WANDB_MODE`` set by the user wins (``online`` needs an API key: without one W&B would prompt, so
    that is an error instead); otherwise online when an API key is configured, else offline. The
    environment carries the decision to DDP child processes.
    """
    env = os.environ if environ is None else environ
    mode = (env.get("WANDB_MODE") or "").strip().lower()
    if mode in ("online", "run") and not wandb_api_key_configured(env):
        raise ConfigError(
            "WANDB_MODE=online but no W&B API key is configured: run `wandb login` or set WANDB_API_KEY, "
            "or unset WANDB_MODE to log offline"
        )
    if not mode:
        mode = "online" if wandb_api_key_configured(env) else "offline"
        env["WANDB_MODE"] = mode
    return mode


def wandb_online(environ: dict | None = None) -> bool:
    env = os.environ if environ is None else environ
    return (env.get("WANDB_MODE") or "").strip().lower() in ("online", "run")


def local_rank() -> int:
    """This process's rank on its node as the launchers set it (0 before any launcher ran)."""
    for key in ("LOCAL_RANK", "SLURM_LOCALID"):
        value = os.environ.get(key)
        if value and value.isdigit():
            return int(value)
    return 0
