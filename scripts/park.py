"""Park a run folder in the repository and bring it back: a run longer than a work session outlives the session
only through what is committed (a new session's checkout has none of the ignored ``.cache/``), so at a session's
end a run still training is stopped (SIGTERM: it saves last.ckpt), parked and committed, and the next session
restores and resumes it.

    python -m scripts.park .cache/runs_h/NAME               # -> reports/parked/NAME/, then commit it
    python -m scripts.park --restore reports/parked/NAME    # -> the folder it was parked from

Parked is what resuming, ``--adopt`` and branching read: config.yaml, sessions/, metrics.json, the test sample
grids, every checkpoint (last.ckpt to resume; best.ckpt, which a finished fit tests and whose path last.ckpt
keeps; before_epoch<N>.ckpt to branch from) and the local artifact index, so version numbers go on from there
(the versions' own copies are not parked: a ``wandb:`` reference to one fails in one line). Every checkpoint
must load with ``weights_only=True`` when parked (a fit still writing is refused), and every file must match the
digest taken then before it is restored. A restore goes to the absolute folder the run was parked from, as its
checkpoints and config.yaml name it, and never replaces a last.ckpt that has gone further than the parked one."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from coupled.artifacts import file_signature
from coupled.checkpoint_io import CheckpointError, load_checkpoint_safely
from lightning_modules.files import atomic_copy, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
PARKED = ROOT / "reports" / "parked"
MANIFEST = "PARKED.json"
FILES = ("config.yaml", "metrics.json", "sessions/*.yaml", "samples/test*.png", "checkpoints/*.ckpt",
         "checkpoints/index.json")  # not versions/: copies of last and best, which the index may still name


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
    """Copy the run `folder`'s state into ``into/<folder name>/`` with a manifest; files of an earlier park that
    the run no longer has (an old best.ckpt) are removed. Returns the parked folder."""
    folder = folder.resolve()
    if not (folder / "config.yaml").is_file() or not (folder / "checkpoints" / "last.ckpt").is_file():
        raise ParkError(f"{folder} is not a run folder with a checkpoint (config.yaml, checkpoints/last.ckpt): "
                        f"name the folder under --runs_dir that a fit wrote")
    files = sorted({p.relative_to(folder) for pattern in FILES for p in folder.glob(pattern) if p.is_file()})
    seen = {f: file_signature(folder / f) for f in files}  # a fit still writing replaces or rewrites one
    dest = into / folder.name
    old = _manifest(dest)["files"] if (dest / MANIFEST).is_file() else {}
    for f in files:
        atomic_copy(folder / f, dest / f)
    if any(file_signature(folder / f) != seen[f] for f in files):
        raise ParkError(f"{folder} changed while it was parked: stop its fit first (SIGTERM saves last.ckpt), then "
                        f"park again")
    steps = {f: _step(dest / f) for f in files if f.suffix == ".ckpt"}  # each copy loads, or no manifest
    for name in set(old) - {str(f) for f in files}:
        (dest / name).unlink(missing_ok=True)
    manifest = {"from": str(folder), "global_step": steps[Path("checkpoints/last.ckpt")],
                "parked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "files": {str(f): _sha256(dest / f) for f in files}}
    atomic_write_text(dest / MANIFEST, json.dumps(manifest, indent=1))
    return dest


def _manifest(parked: Path) -> dict:
    try:
        manifest = json.loads((parked / MANIFEST).read_text())
        if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("global_step"), int):
            raise ValueError("no files or global_step")
    except (OSError, ValueError, AttributeError) as e:
        raise ParkError(f"{parked / MANIFEST} cannot be read ({e}): name a folder that scripts.park wrote") from None
    return manifest


def restore(parked: Path) -> Path:
    """Copy a parked run back to the folder it was parked from. Returns that folder."""
    manifest = _manifest(parked)
    for name, digest in manifest["files"].items():
        if not (parked / name).is_file() or _sha256(parked / name) != digest:
            raise ParkError(f"{parked / name} is missing or differs from when it was parked: check it out again "
                            f"(git checkout -- {parked}) before restoring")
    dest = Path(manifest["from"])
    last = dest / "checkpoints" / "last.ckpt"
    if last.is_file():
        try:
            step = _step(last)
        except ParkError:
            raise ParkError(f"{last} is there but unreadable: move it aside, then restore") from None
        if step > manifest["global_step"]:
            raise ParkError(f"{last} has gone further (step {step}) than the parked run (step "
                            f"{manifest['global_step']}): resume it as it is, or move the folder aside to restore")
    for name in manifest["files"]:
        atomic_copy(parked / name, dest / name)
    return dest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m scripts.park", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a run folder to park, or with --restore a parked folder")
    p.add_argument("--restore", action="store_true", help="copy a parked run back to where it was parked from")
    p.add_argument("--into", type=Path, default=PARKED, help="where runs are parked (default reports/parked)")
    args = p.parse_args(argv)
    try:
        if args.restore:
            dest = restore(args.folder)
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
