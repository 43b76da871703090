"""The one way to find the run's W&B logger among a Trainer's loggers (sample images, artifacts, the config).

By class name, not ``isinstance``: W&B stays an optional import, and a subclass or a stand-in named
``WandbLogger`` (as the tests use) counts too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def wandb_logger(loggers: Iterable[Any]) -> Any | None:
    """The first logger whose class is named ``WandbLogger``, or None."""
    return next((lg for lg in loggers if type(lg).__name__ == "WandbLogger"), None)
