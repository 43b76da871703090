"""A/B of `CoupledSigmoidNet.log_likelihood` between a git revision and the working tree, in one process.

    python scripts/ab_log_likelihood.py REV [--images 100] [--repeats 6]
    python scripts/ab_log_likelihood.py --blocks 19,20,21,22 [--images 64]   # block sizes 2**19 .. 2**22

Loads `lightning_modules/model.py` as it was at REV next to the current one, gives both the same weights
and the same binarized MNIST test images, alternates them `--repeats` times (K = 1000) and prints each
one's times, the medians and the largest difference of their estimates on a few images with the same
generator (the same estimator must give the same numbers up to rounding). On a machine whose speed drifts,
only such side-by-side runs can tell a change's effect. With `--blocks` it instead alternates the working
tree's `log_likelihood` over several `max_chunk_elements` (powers of two).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from lightning_modules import CoupledSigmoidNet

ROOT = Path(__file__).resolve().parents[1]


def model_at(rev: str):
    source = subprocess.run(["git", "show", f"{rev}:lightning_modules/model.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "model_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("lightning_modules.model_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CoupledSigmoidNet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rev", nargs="?")
    p.add_argument("--blocks", help="comma-separated log2 of max_chunk_elements to compare instead of a REV")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = p.parse_args()
    if (args.rev is None) == (args.blocks is None):
        p.error("give a git revision or --blocks, not both")
    import bench  # scripts/bench.py: the benchmark's own inputs

    torch.manual_seed(0)
    new = CoupledSigmoidNet(bench.SIZES)
    if args.blocks:
        return compare_blocks(new, *bench.eval_inputs(args, args.images), args)
    old = model_at(args.rev)(bench.SIZES)
    old.load_state_dict(new.state_dict())
    x, y = bench.eval_inputs(args, args.images)
    a = old.log_likelihood(x[:5], y[:5], 300, generator=torch.Generator().manual_seed(1))
    b = new.log_likelihood(x[:5], y[:5], 300, generator=torch.Generator().manual_seed(1))
    times: dict[str, list[float]] = {args.rev: [], "working tree": []}
    for r in range(args.repeats):
        arms = [(args.rev, old), ("working tree", new)]
        for name, net in arms if r % 2 else arms[::-1]:
            t0 = time.perf_counter()
            net.log_likelihood(x, y, 1000)
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.3f} s of {[round(t, 2) for t in ts]}")
    print(f"largest difference of the estimates (same generator): {(a - b).abs().max().item():.2e} nats")


def compare_blocks(net: CoupledSigmoidNet, x, y, args) -> None:
    sizes = {f"2**{e}": 2 ** int(e) for e in args.blocks.split(",")}
    times: dict[str, list[float]] = {k: [] for k in sizes}
    for r in range(args.repeats):
        for name in list(sizes) if r % 2 else list(sizes)[::-1]:
            t0 = time.perf_counter()
            net.log_likelihood(x, y, 1000, max_chunk_elements=sizes[name])
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"max_chunk_elements {name}: median {statistics.median(ts):.3f} s of {[round(t, 2) for t in ts]}")


if __name__ == "__main__":
    main()
