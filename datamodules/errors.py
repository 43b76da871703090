"""The data's member of the project's one error family (:class:`lightning_modules.errors.CoupledError`)."""

from __future__ import annotations

from lightning_modules.errors import CoupledError


class DataError(CoupledError, ValueError):
    """A data problem the user can fix (wrong path, bad dataset, bad option), in one line."""
