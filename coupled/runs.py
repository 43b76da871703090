"""One run, one id, one folder: how the CLI names a run and decides whether W&B logs online.

A run's id is the W&B run id (also used when W&B is not the logger): it names the run folder
``<runs_dir>/<run id>/`` (checkpoints/, samples/, config.yaml, wandb/) and the model artifact
``model-<run id>``. It is decided once, by the process the user started, and handed to the processes
Lightning's DDP launcher starts through the environment, so every rank agrees on it.
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
