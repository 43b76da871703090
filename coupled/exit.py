"""How the application ends: user errors as one line ``coupled: error: ...`` and an exit status.

Every error the user can fix is a :class:`~lightning_modules.errors.CoupledError` (or a missing file, or bad
YAML); :func:`one_line` is the one place that words them and :func:`fail` the one place that prints them.
"""

from __future__ import annotations

import sys

import yaml
from lightning_fabric.utilities.exceptions import MisconfigurationException

from lightning_modules.errors import CoupledError

PROG = "coupled"
#: what the user can fix: printed as one line (exit status 2, or the error's own ``exit_code``); Lightning raises
#: MisconfigurationException only for settings it cannot work with (e.g. a ModelCheckpoint monitor never logged)
USER_ERRORS = (CoupledError, FileNotFoundError, yaml.YAMLError, MisconfigurationException)


def squeeze(text: str) -> str:
    return " ".join(str(text).split())


def find(exc: BaseException | None, kind: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of type `kind` in `exc`'s chain of causes and contexts."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def user_error(exc: BaseException) -> BaseException | None:
    """The first user error (ours, the data's, a missing file, bad YAML) in ``exc``'s chain, if any."""
    return find(exc, USER_ERRORS)


def one_line(exc: BaseException) -> str:
    text = squeeze(str(exc))
    if isinstance(exc, FileNotFoundError) and exc.filename:
        text = f"no such file: {exc.filename}"
    elif isinstance(exc, yaml.YAMLError):
        text = f"bad YAML: {text}"
    return text or type(exc).__name__


def exit_code(exc: BaseException) -> int:
    return int(getattr(exc, "exit_code", 2))


def fail(message: str, code: int = 2) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)
