"""The one way this project writes a file: a crash at any moment leaves the old file or the new one, never a
torn one, and no temporary file outlives the process that wrote it for long.

It lives in the bottom package of the import order so that the application (checkpoints, the artifact index),
the callbacks (sample grids, predictions) and the datamodules (the decoded-image cache) share it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(dirname: str | os.PathLike) -> None:
    """Make a rename in `dirname` durable (a power cut could otherwise undo it)."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM)
        return True
    return True


def remove_stale_temps(dirname: str | os.PathLike, base: str | None = None) -> None:
    """Remove temporary files (of `base`, or of any file) that a writer process left when it was killed: a
    ``kill -9`` mid-write leaves one, and the pid in its name no longer runs."""
    name_part = re.escape(base) if base is not None else ".+"
    pattern = re.compile(rf"^\.{name_part}\.(\d+)\.[^.]+{re.escape(TMP_SUFFIX)}$")
    try:
        names = os.listdir(dirname)
    except OSError:
        return
    for name in names:
        m = pattern.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.remove(os.path.join(dirname, name))
            except OSError:
                pass


@contextmanager
def atomic_write(path: str | os.PathLike, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace `path` only when the ``with`` block succeeds.

    Writes ``.<name>.<pid>.<random>.tmp`` next to `path` (same file system, so the rename is atomic), then
    flush, ``fsync`` (when `durable`), ``os.replace`` onto `path` and ``fsync`` of the folder. On any failure
    the temporary file is removed and `path` is untouched. The file gets the mode a plain ``open`` would give
    (0666 less the umask), not ``mkstemp``'s 0600.
    """
    path = Path(os.fspath(path))
    dirname = path.parent if str(path.parent) else Path(".")
    dirname.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dirname)  # any file's: the next write in the folder cleans up after a killed one
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=dirname)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(dirname)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`text` (UTF-8) as the new contents of `path`, atomically."""
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))


def atomic_copy(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """A copy of the file `source` as the new contents of `path`, atomically."""
    with open(source, "rb") as src, atomic_write(path) as dst:
        shutil.copyfileobj(src, dst)
