"""The one atomic write: all or nothing, the mode a plain open gives, and no temporary file left behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from lightning_modules.files import TMP_SUFFIX, atomic_write, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        os.umask(0o002)
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == 0o644 and _mode(tmp_path / "b.json") == 0o664


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_a_temporary_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".x.bin.{int(dead.stdout)}.abcd1234{TMP_SUFFIX}"  # a pid that no longer runs
    stale.write_bytes(b"torn")
    atomic_write_text(tmp_path / "x.bin", "new")
    assert not stale.exists() and (tmp_path / "x.bin").read_text() == "new"


def test_the_cli_writes_checkpoints_with_the_umask_mode(trained_run):
    """Issue #14, point 12: best.ckpt and last.ckpt were 0600 whatever the umask (the run inherits this one)."""
    mask = os.umask(0)
    os.umask(mask)
    folder = trained_run["run_dir"] / "checkpoints"
    for name in ("best.ckpt", "last.ckpt", "index.json"):
        assert _mode(folder / name) == 0o666 & ~mask, name


def test_any_files_temporary_of_a_killed_writer_goes_with_the_next_write_in_the_folder(tmp_path):
    """Issue #14, point 12: kill -9 during the very first write of best.ckpt left its .tmp for good."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".best.ckpt.{int(dead.stdout)}.k9k9k9k9{TMP_SUFFIX}"
    stale.write_bytes(b"torn")
    atomic_write_text(tmp_path / "last.ckpt", "new")  # another file of the folder
    assert not stale.exists()
