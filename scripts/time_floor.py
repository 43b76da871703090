"""The least time a recipe can run in on this machine: its matrix-product FLOPs at this machine's matrix-product rate.

Issue 15 asks for each run within 3 hours of a 2-core CPU. A step of the SBN objectives is mostly matrix products,
so a run's matrix-product FLOPs (counted by ``torch.utils.flop_counter`` on the objective's own step) at the rate
``torch.mm`` reaches on the step's own shapes bound its time from below, whatever the framework around them costs.
A recipe whose floor is over a budget cannot meet it on that machine by faster code, only with fewer FLOPs (K,
widths, epochs, the test's K) or a faster machine. Counted: the training steps, each epoch's validation (the
objective's forward pass and the self-consistency samples) and the test's likelihoods (own and fitted proposal,
with the proposal's fitting steps); left out (so the floor stays a floor): RBM pretraining, the sample-quality
callback, every element-wise operation. Given a run's metrics.json, its measured epochs are set against their
floor.

  python -m scripts.time_floor fit --config configs/mnist.yaml            (a coupled command line, resolved)
  python -m scripts.time_floor --metrics reports/logs/sc3f_l150_s1_metrics.json fit --config configs/mnist.yaml \
      --config configs/sample_consistency_frozen.yaml                     (with a run's measured epochs)
  python -m scripts.time_floor --resolved <run folder>/config.yaml        (a run's own config and metrics.json)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from lightning_modules import OBJECTIVES, CoupledSigmoidNet
from lightning_modules.fitted import fit_proposal
from lightning_modules.objectives import options_at
from scripts.run_config import resolved_config

TEST_IMAGES = 10_000  # MNIST's and Fashion-MNIST's test sets
LL_ROWS = 4  # test examples counted for the likelihood: its FLOPs are the same for each


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def binary(rows: int, d: int) -> torch.Tensor:
    return torch.rand(rows, d).round()


def phases(kwargs: dict, start_epochs: dict, max_epochs: int) -> list[tuple[int, dict]]:
    """(epochs, the objective's options) for each run of consecutive epochs with the same options."""
    out: list[tuple[int, dict]] = []
    for epoch in range(max_epochs):
        options = options_at(kwargs, start_epochs, epoch)
        if out and out[-1][1] == options:
            out[-1] = (out[-1][0] + 1, options)
        else:
            out.append((1, options))
    return out


def run_flops(config: dict, input_dim: int, num_classes: int, train_images: int) -> dict[str, float]:
    """FLOPs of each counted part of the run a resolved config trains (``coupled fit --print_config``)."""
    model, data = config["model"], config["data"].get("init_args", config["data"])
    sizes = model.get("sizes") or [input_dim, *model["hidden_sizes"], num_classes]
    net = CoupledSigmoidNet(sizes, tied=model.get("tied", True))
    objective = OBJECTIVES[model["objective"]]
    batch, val = data["batch_size"], data.get("val_size") or 0
    steps_per_epoch = math.ceil((train_images - val) / batch)
    x, y = binary(batch, sizes[0]), torch.randint(num_classes, (batch,))
    parts = {"train": 0.0, "validation": 0.0}
    for epochs, options in phases(model.get("objective_kwargs") or {}, model.get("objective_start_epochs") or {},
                                  config["trainer"]["max_epochs"]):
        step = flops(lambda o=options: objective(net, x, y, **o)["loss"].backward())
        with torch.no_grad():
            forward = flops(lambda o=options: objective(net, x, y, **o))
        parts["train"] += epochs * steps_per_epoch * step
        parts["validation"] += epochs * math.ceil(val / batch) * forward
    n = (model.get("self_consistency_per_class") or 0) * num_classes
    with torch.no_grad():
        per_val = flops(lambda: net.recognize(net.sample_images(torch.arange(n) % num_classes))) if n else 0
    parts["validation"] += config["trainer"]["max_epochs"] * per_val
    k, fit_steps = model.get("eval_num_samples") or 0, model.get("fitted_proposal_steps") or 0
    ll = flops(lambda: net.log_likelihood(binary(LL_ROWS, sizes[0]), y[:LL_ROWS], k)) / LL_ROWS if k else 0
    fit = flops(lambda: fit_proposal(net, x, y, steps=1, batch_size=batch)) if fit_steps else 0
    parts["test"] = TEST_IMAGES * ll * (2 if fit_steps else 1) + fit_steps * fit
    return parts


def matmul_rate(sizes: list[int], rows: int, repeats: int = 7) -> float:
    """FLOP/s of torch.mm on a step's shapes: each layer's forward (rows x d_in @ d_in x d_out) and weight gradient
    (d_out x rows @ rows x d_in); the median of `repeats` timings."""
    mats = [(torch.randn(rows, a), torch.randn(a, b), torch.randn(b, rows)) for a, b in zip(sizes[:-2], sizes[1:-1])]
    total = sum(2 * rows * a.shape[1] * b.shape[1] * 2 for a, b, _ in mats)

    def once() -> float:
        t = time.perf_counter()
        for a, b, g in mats:
            a @ b
            g @ a
        return time.perf_counter() - t

    once()
    return total / statistics.median(once() for _ in range(repeats))


def measured_seconds(path: Path | None) -> float | None:
    """The sum of the epochs' measured seconds in a run's metrics.json, None without one."""
    if path is None or not path.is_file():
        return None
    seconds = [e.get("seconds") for e in json.loads(path.read_text()).get("epochs", [])]
    return sum(s for s in seconds if s) or None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolved", type=Path, help="a resolved config (a run folder's config.yaml) instead of CLI")
    parser.add_argument("--metrics", type=Path, help="a run's metrics.json (default: the one beside --resolved)")
    parser.add_argument("--input_dim", type=int, default=784)
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--train_images", type=int, default=60_000, help="before the validation split")
    parser.add_argument("--budget_hours", type=float, default=3.0)
    parser.add_argument("cli", nargs=argparse.REMAINDER, help="a coupled command line, e.g. fit --config ...")
    args = parser.parse_args(argv)
    if (args.resolved is None) == (not args.cli):
        parser.error("give a coupled command line (fit --config ...) or --resolved CONFIG, one of the two")
    config = yaml.safe_load(args.resolved.read_text()) if args.resolved else resolved_config(args.cli, Path.cwd())
    metrics = args.metrics or (args.resolved.parent / "metrics.json" if args.resolved else None)
    torch.manual_seed(0)
    parts = run_flops(config, args.input_dim, args.num_classes, args.train_images)
    model = config["model"]
    sizes = model.get("sizes") or [args.input_dim, *model["hidden_sizes"], args.num_classes]
    rows = config["data"].get("init_args", config["data"])["batch_size"] * \
        (model.get("objective_kwargs") or {}).get("num_samples", 1)
    rate = matmul_rate(sizes, rows)
    print(f"torch.mm on the step's shapes ({torch.get_num_threads()} threads): {rate / 1e9:.1f} GFLOP/s")
    for name, f in parts.items():
        print(f"{name:>10}: {f / 1e12:8.1f} TFLOP  {f / rate / 3600:6.2f} h")
    floor = sum(parts.values()) / rate / 3600
    print(f"{'floor':>10}: {sum(parts.values()) / 1e12:8.1f} TFLOP  {floor:6.2f} h  ({floor / args.budget_hours:.0%} "
          f"of {args.budget_hours:g} h)")
    seconds = measured_seconds(metrics)
    if seconds:
        floor_epochs = (parts["train"] + parts["validation"]) / rate
        print(f"measured epochs: {seconds / 3600:.2f} h, {seconds / floor_epochs:.2f}x their floor")


if __name__ == "__main__":
    main()
