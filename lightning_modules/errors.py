"""The one family of user-facing errors: every layer raises a subclass, the CLI prints it as one line.

It lives here, in the bottom package of the import order (the application → callbacks and datamodules →
lightning_modules), so that every package can raise it without importing upwards.
"""

from __future__ import annotations

from typing import Any


class CoupledError(Exception):
    """A problem the user can fix; the message is one line saying what was wrong and how to fix it.

    The CLI prints it as ``coupled: error: <message>`` without a traceback and exits with ``exit_code``.
    """

    exit_code = 2  # a usage error, as argparse's

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(CoupledError, ValueError):
    """A bad setting."""


class CheckpointError(CoupledError, ValueError):
    """A checkpoint file that cannot be used: missing, truncated, corrupted, unsafe or for another model."""


class NonFiniteLossError(CoupledError, RuntimeError):
    """Training produced a NaN or Inf: the message names the step, the loss part(s) and the last good
    checkpoint. Not a usage error, so the CLI exits with status 1."""

    exit_code = 1


def is_int(value: Any) -> bool:
    """What the checks accept as an integer setting: an int, not a bool (YAML's `true` is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)
