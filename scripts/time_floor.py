"""The least time this implementation's matrix products take for a run on this machine, at torch.mm's rate.

Issue 15 asks for each run within 3 hours of a 2-core CPU. A step of the SBN objectives is mostly matrix products,
so a run's matrix-product FLOPs (counted by ``torch.utils.flop_counter`` on the objective's own step, batch by
batch) at the best rate ``torch.mm`` reaches on the run's shapes bound its time from below, whatever the rest of
the framework costs: a run whose floor is near a budget meets it only with fewer FLOPs (in the recipe, or by an
implementation that computes less) or a faster machine. Counted: the training steps, each epoch's validation (the
objective's forward pass with every term, the self-consistency samples) and the test's likelihoods (own and fitted
proposal, with the proposal's fitting steps); left out, so the floor stays a floor: RBM pretraining, the test's
other passes, the sample-quality callback, every element-wise operation. Given a run's metrics.json, its measured
epochs are set against the floor of the same epochs; with --steps N, N timed training steps of each phase (forward,
backward, the run's optimizer) project the training steps' hours at this machine's real rate, so a cheaper recipe's
time can be read before a run. Measure on an idle machine: other work lowers the rate.

  python -m scripts.time_floor fit --config configs/mnist.yaml            (a coupled command line, resolved)
  python -m scripts.time_floor --metrics reports/logs/sc3f_l150_s1_metrics.json fit --config configs/mnist.yaml \\
      --config configs/sample_consistency_frozen.yaml                     (with a run's measured epochs)
  python -m scripts.time_floor --resolved <run folder>/config.yaml        (a run's own config and metrics.json)
  python -m scripts.time_floor --steps 30 fit --config configs/mnist.yaml --model.hidden_sizes '[400,400,400]'
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from datamodules.options import default_eval_batch_size, split_sizes
from lightning_modules import OBJECTIVES, CoupledSigmoidNet, make_optimizer
from lightning_modules.fitted import fit_proposal
from lightning_modules.likelihood import block_shape
from lightning_modules.objectives import options_at
from lightning_modules.sizes import resolve_sizes
from scripts.run_config import resolved_config

TEST_IMAGES = 10_000  # MNIST's and Fashion-MNIST's test sets
LL_ROWS = 4  # test examples counted for the likelihood: its FLOPs are the same for each
# settings that change how much work a run does in ways the count does not follow, with the value it assumes
ASSUMED = {("model", "generative_delay_epochs"): 0, ("model", "generative_ramp_epochs"): 0,
           ("trainer", "max_steps"): -1, ("trainer", "check_val_every_n_epoch"): 1,
           ("trainer", "limit_train_batches"): None, ("trainer", "limit_val_batches"): None,
           ("trainer", "limit_test_batches"): None, ("trainer", "precision"): None}


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def batches(n: int, size: int, drop_last: bool = False) -> list[tuple[int, int]]:
    """(count, rows) of the batches `n` examples make at `size` a batch."""
    full, rest = divmod(n, size)
    return [(full, size)] + ([(1, rest)] if rest and not drop_last else [])


def phases(kwargs: dict, start_epochs: dict, max_epochs: int) -> list[tuple[int, dict]]:
    """(epochs, the objective's options in training) for each run of consecutive epochs with the same options."""
    out: list[tuple[int, dict]] = []
    for epoch in range(max_epochs):
        options = options_at(kwargs, start_epochs, epoch)
        if out and out[-1][1] == options:
            out[-1] = (out[-1][0] + 1, options)
        else:
            out.append((1, options))
    return out


def unmodelled(config: dict) -> list[str]:
    """The settings of `config` that change the run's work in a way the count does not follow."""
    out = []
    for (group, key), assumed in ASSUMED.items():
        value = (config.get(group) or {}).get(key, assumed)
        if value != assumed and not (key == "precision" and str(value) in ("32", "32-true")):
            out.append(f"{group}.{key} {value!r}")
    return out


def model_and_data(config: dict) -> tuple[dict, dict]:
    """A resolved config's model options and its DataModule's (under `init_args` when a class is named)."""
    return config["model"], config["data"].get("init_args", config["data"])


def layer_sizes(config: dict, input_dim: int, num_classes: int) -> list[int]:
    model = config["model"]
    return resolve_sizes(model.get("sizes"), model.get("hidden_sizes"), input_dim, num_classes)


def row_counts(config: dict, sizes: list[int]) -> list[int]:
    """The rows of a training step's K-sample products and of a test likelihood block."""
    model, data = model_and_data(config)
    step = data["batch_size"] * (model.get("objective_kwargs") or {}).get("num_samples", 1)
    examples, per_example = block_shape(CoupledSigmoidNet(sizes), model.get("eval_num_samples") or 1)
    return sorted({step, examples * per_example})


def splits(config: dict, train_images: int) -> tuple[list[tuple[int, int]], int]:
    """The run's training batches as (count, rows), and its validation images, as the DataModule splits them."""
    data = model_and_data(config)[1]
    n_train, val = split_sizes(train_images, data.get("val_size") or 0, data.get("train_size"), data["batch_size"],
                               "the run")
    return batches(n_train, data["batch_size"], data.get("drop_last", False)), val


def run_flops(config: dict, input_dim: int, num_classes: int, train_images: int) -> tuple[dict[str, float], list]:
    """FLOPs of each counted part of the run a resolved config trains (``coupled fit --print_config``), and of
    each epoch (its training steps and validation)."""
    model, data = model_and_data(config)
    sizes = layer_sizes(config, input_dim, num_classes)
    net, objective = CoupledSigmoidNet(sizes, tied=model.get("tied", True)), OBJECTIVES[model["objective"]]
    kwargs, epochs = model.get("objective_kwargs") or {}, config["trainer"]["max_epochs"]
    train_split, val = splits(config, train_images)

    def batch(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(rows, sizes[0]).round(), torch.randint(num_classes, (rows,))

    def over(split: list[tuple[int, int]], fn) -> float:
        total = 0.0
        for count, rows in split:
            x, y = batch(rows)
            total += count * flops(lambda: fn(x, y))  # noqa: B023 (called at once, in this iteration)
        return total

    train = []
    for count, options in phases(kwargs, model.get("objective_start_epochs") or {}, epochs):
        train += [over(train_split, lambda x, y, o=options: objective(net, x, y, **o)["loss"].backward())] * count
    validation = 0.0
    if val:  # every term from the start, then the self-consistency samples
        with torch.no_grad():
            validation = over(batches(val, data.get("eval_batch_size") or default_eval_batch_size(data["batch_size"])),
                              lambda x, y: objective(net, x, y, **kwargs))
            n = (model.get("self_consistency_per_class") or 0) * num_classes
            validation += flops(lambda: net.recognize(net.sample_images(torch.arange(n) % num_classes))) if n else 0
    parts = {"train": sum(train), "validation": epochs * validation, "test": 0.0}
    k, fit_steps = model.get("eval_num_samples") or 0, model.get("fitted_proposal_steps") or 0
    if config.get("test_after_fit", True) and k:
        ll = flops(lambda: net.log_likelihood(*batch(LL_ROWS), k)) / LL_ROWS
        fit = flops(lambda: fit_proposal(net, *batch(128), steps=1)) if fit_steps else 0  # the learner's batch, 128
        parts["test"] = TEST_IMAGES * ll * (2 if fit_steps else 1) + fit_steps * fit
    return parts, [t + validation for t in train]


def step_seconds(config: dict, input_dim: int, num_classes: int, steps: int) -> list[tuple[int, float]]:
    """(epochs, seconds) of each training phase: the median of `steps` timed steps of the run's objective with that
    phase's options on a batch of binary images, backward and the run's optimizer included (the learner's step
    without Lightning, whose cost per step is make bench's row), after two untimed ones. One process: under DDP
    each process's batch is the config's batch size too."""
    model, data = model_and_data(config)
    net = CoupledSigmoidNet(layer_sizes(config, input_dim, num_classes), tied=model.get("tied", True),
                            learn_prior=model.get("learn_prior", False))
    opt = make_optimizer(net.parameters(), model.get("optimizer", "adam"), model.get("lr", 1e-3),
                         model.get("weight_decay", 0.0))
    objective, kwargs = OBJECTIVES[model["objective"]], model.get("objective_kwargs") or {}
    x, y = torch.rand(data["batch_size"], input_dim).round(), torch.randint(num_classes, (data["batch_size"],))
    extra = {"generator": torch.Generator().manual_seed(0)} if "generator" in inspect.signature(objective).parameters \
        else {}
    torch.set_flush_denormal(True)  # as the learner does (lightning_modules/learner.py, setup)
    out = []
    for epochs, options in phases(kwargs, model.get("objective_start_epochs") or {}, config["trainer"]["max_epochs"]):
        times = []
        for _ in range(steps + 2):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            objective(net, x, y, **options, **extra)["loss"].backward()
            opt.step()
            times.append(time.perf_counter() - t)
        out.append((epochs, statistics.median(times[2:])))
    return out


def mm_seconds(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> float:
    t = time.perf_counter()
    x @ w
    g @ x
    return time.perf_counter() - t


def matmul_rate(sizes: list[int], rows: list[int], repeats: int = 20) -> float:
    """The best FLOP/s of torch.mm over a run's shapes: for each layer and each row count, the forward product
    (rows x d_in @ d_in x d_out) and the weight gradient's (d_out x rows @ rows x d_in), the fastest of
    `repeats` (a floor wants the best the machine does, and the fastest is the steadiest reading of it)."""
    best = 0.0
    for n in rows:
        for a, b in zip(sizes[:-1], sizes[1:]):
            mats = torch.randn(n, a), torch.randn(a, b), torch.randn(b, n)
            mm_seconds(*mats)
            best = max(best, 4 * n * a * b / min(mm_seconds(*mats) for _ in range(repeats)))
    return best


def measured(path: Path | None) -> dict[int, float]:
    """{epoch: seconds} of the epochs a run's metrics.json timed (a resumed epoch has no time)."""
    if path is None or not path.is_file():
        return {}
    return {e["epoch"]: e["seconds"] for e in json.loads(path.read_text()).get("epochs", []) if e.get("seconds")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolved", type=Path, help="a resolved config (a run folder's config.yaml) instead of CLI")
    parser.add_argument("--metrics", type=Path, help="a run's metrics.json (default: the one beside --resolved)")
    parser.add_argument("--input_dim", type=int, default=784)
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--train_images", type=int, default=60_000, help="before the validation split")
    parser.add_argument("--budget_hours", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=0, help="time this many training steps of each phase (0: none)")
    parser.add_argument("cli", nargs=argparse.REMAINDER, help="a coupled command line, e.g. fit --config ...")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]  # before this program's own work counts in it
    if (args.resolved is None) == (not args.cli):
        parser.error("give a coupled command line (fit --config ...) or --resolved CONFIG, one of the two")
    config = yaml.safe_load(args.resolved.read_text()) if args.resolved else resolved_config(args.cli, Path.cwd())
    if bad := unmodelled(config):
        raise SystemExit(f"time_floor counts full epochs of the default schedule; this run sets {', '.join(bad)}: "
                         f"leave those settings out")
    torch.manual_seed(0)
    parts, per_epoch = run_flops(config, args.input_dim, args.num_classes, args.train_images)
    sizes = layer_sizes(config, args.input_dim, args.num_classes)
    rate = matmul_rate(sizes, row_counts(config, sizes))
    print(f"torch.mm on the run's shapes ({torch.get_num_threads()} threads), best: {rate / 1e9:.1f} GFLOP/s"
          + (f" (load average {load:.1f} at the start: other work shares the CPU, so this floor reads high)"
             if load > 1 else ""))
    for name, f in parts.items():
        print(f"{name:>10}: {f / 1e12:8.1f} TFLOP  {f / rate / 3600:6.2f} h")
    floor = sum(parts.values()) / rate / 3600
    print(f"{'floor':>10}: {sum(parts.values()) / 1e12:8.1f} TFLOP  {floor:6.2f} h  ({floor / args.budget_hours:.0%} "
          f"of {args.budget_hours:g} h)")
    if args.steps > 0:
        steps_per_epoch = sum(count for count, _ in splits(config, args.train_images)[0])
        timed = step_seconds(config, args.input_dim, args.num_classes, args.steps)
        for epochs, s in timed:
            print(f"{'step':>10}: {s * 1e3:8.1f} ms  for {epochs} epochs of {steps_per_epoch} steps: "
                  f"{s * steps_per_epoch:.1f} s an epoch")
        hours = sum(epochs * s for epochs, s in timed) * steps_per_epoch / 3600
        print(f"{'steps':>10}: {hours:6.2f} h of training steps at the measured rate ({hours / args.budget_hours:.0%} "
              f"of {args.budget_hours:g} h; validation, test and pretraining come on top)")
    seconds = measured(args.metrics or (args.resolved.parent / "metrics.json" if args.resolved else None))
    if seconds:
        own = sum(per_epoch[e] for e in seconds if e < len(per_epoch)) / rate
        print(f"measured: {len(seconds)} epochs in {sum(seconds.values()) / 3600:.2f} h, "
              f"{sum(seconds.values()) / own:.2f}x their floor")


if __name__ == "__main__":
    main()
