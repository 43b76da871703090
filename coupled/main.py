"""``coupled``: the entry point of the console script and of ``python -m coupled``."""

from __future__ import annotations

import sys
import warnings

from .exit import exit_code, fail, one_line, user_error
from .quiet import quiet
from .runs import configure_wandb_mode


def _finish_wandb(code: int) -> None:
    """Close this process's W&B run, if one was started (a later ``main()`` in-process starts afresh)."""
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is not None:
        run.finish(exit_code=code)


def main(args: list[str] | None = None) -> None:
    """``coupled``: run the CLI on ``args`` (default ``sys.argv[1:]``)."""
    code = 1
    try:
        configure_wandb_mode()
        with warnings.catch_warnings():
            quiet()
            if args is not None:  # a script or a test that passes its own args: its sys.argv is not ours
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            argv = sys.argv[1:] if args is None else list(args)
            if argv[:1] == ["sample"]:  # not a Trainer verb: its own small parser (coupled/sample.py)
                from .sample import main as sample_main

                sample_main(argv[1:])
            elif argv[:1] == ["reference"]:  # the sample-scoring classifier's own LightningCLI
                from .reference import main as reference_main

                reference_main(argv[1:])
            else:
                from .cli import CoupledCLI

                CoupledCLI(args=args)
        code = 0
    except Exception as exc:
        user = user_error(exc)  # a diverged run too (NonFiniteLossError), with its own exit status 1
        if user is None:
            raise
        fail(one_line(user), exit_code(user))
    finally:
        _finish_wandb(code)
