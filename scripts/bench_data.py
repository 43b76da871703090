"""Time one epoch of data batches (loader + host->device copy + on-device transform).

    python scripts/bench_data.py                         # MNIST via the hub / $COUPLED_DATA_DIR
    python scripts/bench_data.py --data-dir /path/to/mnist --device cuda --reference-model

Prints the cold/warm preparation time and per-epoch data time. ``--reference-model`` also times one
training epoch of a plain 784-512-512-10 sigmoid MLP (SGD, cross-entropy) on the same batches as a
stand-in for the real model, and prints the data time as a percentage of it (target: <= 2%).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules import DataError, HFImageDataModule  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def data_epoch(dm: HFImageDataModule, device: torch.device, epoch: int) -> float:
    dm.set_epoch(epoch)
    loader = dm.train_dataloader()
    sync(device)
    start = time.perf_counter()
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        x = dm.transform(x, train=True)
    sync(device)
    return time.perf_counter() - start


def reference_epoch(dm: HFImageDataModule, device: torch.device, hidden: int = 512) -> float:
    model = torch.nn.Sequential(
        torch.nn.Linear(dm.input_dim, hidden),
        torch.nn.Sigmoid(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.Sigmoid(),
        torch.nn.Linear(hidden, dm.num_classes),
    ).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(dm.transform(x.to(device), train=True), y.to(device)) for x, y in dm.train_dataloader()]
    sync(device)
    start = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="ylecun/mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--binarize", default="dynamic", choices=["dynamic", "static", "none"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--epochs", type=int, default=3, help="data epochs to time (the best is reported)")
    p.add_argument("--reference-model", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)

    try:
        start = time.perf_counter()
        dm = HFImageDataModule(
            name=args.name,
            data_dir=args.data_dir,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            binarize=args.binarize,
        )
        dm.setup("fit")
        prep = time.perf_counter() - start
        start = time.perf_counter()
        again = HFImageDataModule(
            name=args.name,
            data_dir=args.data_dir,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            binarize=args.binarize,
        )
        again.setup("fit")
        warm = time.perf_counter() - start
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    sizes = dm.split_sizes
    print(f"dataset {args.data_dir or args.name}: input_dim={dm.input_dim} classes={dm.num_classes} {sizes}")
    print(f"prepare (first construction, cold or warm cache): {prep:.3f} s; warm-cache load: {warm:.3f} s")
    times = [data_epoch(dm, device, e) for e in range(args.epochs)]
    best = min(times)
    n_batches = len(dm.train_dataloader())
    print(
        f"data epoch on {device} (batch {args.batch_size}, {n_batches} batches, binarize={args.binarize}): "
        f"best {best * 1e3:.1f} ms, all {[round(t * 1e3, 1) for t in times]} ms"
    )
    if args.reference_model:
        ref = min(reference_epoch(dm, device) for _ in range(2))
        print(
            f"reference training epoch (plain {dm.input_dim}-512-512-{dm.num_classes} MLP, SGD): "
            f"{ref * 1e3:.1f} ms -> data/training = {100 * best / ref:.2f}%"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
