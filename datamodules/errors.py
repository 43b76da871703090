"""The one exception type for user-facing data problems."""

from __future__ import annotations


class DataError(ValueError):
    """A data problem the user can fix (wrong path, bad dataset, bad option).

    The message is always a single line saying what is wrong and how to fix it; the CLI prints it
    without a traceback.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
