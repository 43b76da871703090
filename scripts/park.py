"""Park a run folder in the repository and bring it back: a run longer than a work session outlives the session
only through what is committed (a new session's checkout has none of the ignored ``.cache/``), so at a session's
end a run still training is stopped (SIGTERM: it saves last.ckpt), parked and committed, and the next session
restores and resumes it.

    python -m scripts.park .cache/runs_h/NAME               # -> reports/parked/NAME/, then commit it
    python -m scripts.park --restore reports/parked/NAME    # -> the folder it was parked from

Parked is what resuming, ``--adopt`` and branching read: config.yaml, sessions/, metrics.json, the test sample
grids and every checkpoint (last.ckpt to resume; best.ckpt, which a finished fit tests and whose path last.ckpt
keeps; before_epoch<N>.ckpt to branch from). Every checkpoint must load with ``weights_only=True`` before it is
parked, and every file must match the digest taken when parking before it is restored. A restore goes to the
absolute folder the run was parked from (its checkpoints name their own paths) and never replaces a last.ckpt
that has gone further than the parked one."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from coupled.checkpoint_io import CheckpointError, load_checkpoint_safely
from lightning_modules.files import atomic_copy, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
PARKED = ROOT / "reports" / "parked"
MANIFEST = "PARKED.json"
FILES = ("config.yaml", "metrics.json", "sessions/*.yaml", "samples/test*.png", "checkpoints/*.ckpt")


class ParkError(RuntimeError):
    """A folder that cannot be parked or restored; the message says why and what to do."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _step(ckpt: Path) -> int:
    try:
        return int(load_checkpoint_safely(ckpt).get("global_step", -1))
    except CheckpointError as e:
        raise ParkError(str(e)) from None


def park(folder: Path, into: Path = PARKED) -> Path:
    """Copy the run `folder`'s state into ``into/<folder name>/`` with a manifest; files parked before and gone
    from the run since (an old best.ckpt) are removed. Returns the parked folder."""
    folder = folder.resolve()
    last = folder / "checkpoints" / "last.ckpt"
    if not (folder / "config.yaml").is_file() or not last.is_file():
        raise ParkError(f"{folder} is not a run folder with a checkpoint (config.yaml, checkpoints/last.ckpt): "
                        f"name the folder under --runs_dir that a fit wrote")
    files = sorted({p.relative_to(folder) for pattern in FILES for p in folder.glob(pattern) if p.is_file()})
    steps = {str(f): _step(folder / f) for f in files if f.suffix == ".ckpt"}  # each loads, or nothing is parked
    dest = into / folder.name
    for f in files:
        atomic_copy(folder / f, dest / f)
    for stale in (p for p in dest.rglob("*") if p.is_file() and p.name != MANIFEST):
        if stale.relative_to(dest) not in files:
            stale.unlink()
    manifest = {"from": str(folder), "global_step": steps["checkpoints/last.ckpt"],
                "parked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "files": {str(f): _sha256(dest / f) for f in files}}
    atomic_write_text(dest / MANIFEST, json.dumps(manifest, indent=1))
    return dest


def restore(parked: Path, to: Path | None = None) -> Path:
    """Copy a parked run back to the folder it came from (or `to`). Returns that folder."""
    try:
        manifest = json.loads((parked / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise ParkError(f"{parked} has no readable {MANIFEST} ({e}): name a folder that scripts.park wrote") from None
    for name, digest in manifest["files"].items():
        if not (parked / name).is_file() or _sha256(parked / name) != digest:
            raise ParkError(f"{parked / name} is missing or differs from when it was parked: check it out again "
                            f"(git checkout -- {parked}) before restoring")
    dest = Path(to or manifest["from"])
    last = dest / "checkpoints" / "last.ckpt"
    if last.is_file() and _step(last) > manifest["global_step"]:
        raise ParkError(f"{last} has gone further (step {_step(last)}) than the parked run (step "
                        f"{manifest['global_step']}): resume it as it is, or move the folder aside to restore")
    for name in manifest["files"]:
        atomic_copy(parked / name, dest / name)
    return dest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m scripts.park", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a run folder to park, or with --restore a parked folder")
    p.add_argument("--restore", action="store_true", help="copy a parked run back to where it was parked from")
    p.add_argument("--to", type=Path, default=None, help="with --restore: another destination folder")
    p.add_argument("--into", type=Path, default=PARKED, help="where runs are parked (default reports/parked)")
    args = p.parse_args(argv)
    try:
        if args.restore:
            dest = restore(args.folder, args.to)
            print(f"restored {args.folder} to {dest}; resume with coupled fit --config {dest / 'config.yaml'} "
                  f"--ckpt_path {dest / 'checkpoints' / 'last.ckpt'}")
        else:
            dest = park(args.folder, args.into)
            size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2**20
            print(f"parked {args.folder} in {dest} ({size:.1f} MiB); commit it (git add {dest})")
    except ParkError as e:
        sys.exit(f"scripts.park: {e}")


if __name__ == "__main__":
    main()
