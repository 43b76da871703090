"""Benchmarks: the framework against a plain PyTorch loop, measured side by side in one run (`make bench`).

Prints one table and writes reports/bench.json and reports/BENCH.md:

- training: one epoch of `symmetric` on MNIST through the CLI (progress bar, W&B offline logging, default
  callbacks) vs a plain loop of the same model, batches and optimizer, A/B interleaved; median ratio. More
  arms: the same LightningModule in a bare pl.Trainer (automatic and manual optimization); a 784->10 linear
  model in a bare pl.Trainer against a loop, which measures Lightning's own cost per step; and the plain loop
  with the objective through torch.compile (`--model.compile`).
- data: the DataModule's epoch of batches (loader + on-device scaling/binarization) as a fraction of the
  framework's training epoch.
- evaluation: `log_likelihood` with K = 1000, achieved FLOP/s as a fraction of `torch.matmul` of the same
  shapes in the same run (both count only the matmul FLOPs the estimate needs).
- memory: peak RSS of one training epoch and of the evaluation, each in a fresh process.
- GPU (when one is available): plain-loop epoch time at batch 128 and 1024: eager, the objective through
  torch.compile (`--model.compile`) and the step as CUDA graphs, next to the FLOP floor (the epoch's matmul
  FLOPs at the measured matmul rate).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402 (after the environment above)

from lightning_modules import OBJECTIVES, CoupledSigmoidNet, make_optimizer  # noqa: E402 (after the environment above)
from lightning_modules.likelihood import block_shape  # noqa: E402 (after the environment above)
from scripts.bench_arms import (  # noqa: E402 (after the environment above)
    SIZES,
    bare_lightning_epoch,
    data_epoch,
    eval_inputs,
    framework_epoch,
    lightning_step_overhead,
    ll_matmul_flops,
    matmul_seconds,
    plain_epoch,
)
from scripts.bench_gpu import device_epochs  # noqa: E402 (after the environment above)

DATA_EPOCHS_PER_REPEAT = 3


def child(kind: str, args) -> None:
    if kind == "train":
        with tempfile.TemporaryDirectory() as d:
            framework_epoch(args, d)
    else:
        torch.manual_seed(0)
        x, y = eval_inputs(args, args.eval_images)
        CoupledSigmoidNet(SIZES).log_likelihood(x, y, 1000)
    print(json.dumps({"peak_rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over from the parent
    across fork + exec, so a child would report the (larger) benchmark process's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss(kind: str, args) -> float:
    cmd = [sys.executable, "-m", "scripts.bench", "--child", kind, "--eval-images", str(args.eval_images)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    env = {k: v for k, v in os.environ.items() if k != "COUPLED_RUN_ID"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=ROOT
                         ).stdout.strip().splitlines()[-1]
    return json.loads(out)["peak_rss_mb"]


OBJECTIVE_ARMS = {"wake_sleep": {}, "rws_K5": {"num_samples": 5}, "vimco_K5": {"num_samples": 5}}


def objective_steps(repeats: int, steps: int = 20, batch: int = 128) -> dict:
    """Median seconds of one training step (objective, backward, fused Adam) of the paper's model, per arm,
    plain loop on a fixed binary batch: what the multi-sample objectives cost against wake-sleep."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, SIZES[0], generator=g) < 0.3).float()
    y = torch.arange(batch) % SIZES[-1]
    times = {arm: [] for arm in OBJECTIVE_ARMS}
    for r in range(repeats):
        for arm in list(OBJECTIVE_ARMS)[:: 1 if r % 2 == 0 else -1]:  # A/B interleaved
            torch.manual_seed(0)
            net = CoupledSigmoidNet(SIZES)
            opt = make_optimizer(net.parameters())
            fn, kwargs = OBJECTIVES[arm.split("_K")[0]], OBJECTIVE_ARMS[arm]
            for i in range(steps + 2):  # 2 warm-up steps
                if i == 2:
                    t0 = time.perf_counter()
                loss = fn(net, x, y, generator=torch.Generator().manual_seed(i), **kwargs)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times[arm].append((time.perf_counter() - t0) / steps)
    return {arm: statistics.median(t) for arm, t in times.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = os.environ.get("COUPLED_DATA_DIR") or (
        str(ROOT.parent / "shared" / "data") if (ROOT.parent / "shared" / "data").is_dir() else None)
    p.add_argument("--data-dir", default=default_data, help="folder holding the mnist/ mirror")
    p.add_argument("--repeats", type=int, default=5, help="repeats of the evaluation (each ~3 minutes)")
    p.add_argument("--train-repeats", type=int, default=9,
                   help="repeats of the training and data arms: short epochs on a noisy machine need more")
    p.add_argument("--eval-images", type=int, default=10_000,
                   help="test images for the evaluation benchmark (default: the whole MNIST test set)")
    p.add_argument("--out", type=Path, default=ROOT / "reports")
    p.add_argument("--memory-only", action="store_true", help="only re-measure peak RSS into bench.json")
    p.add_argument("--gpu-only", action="store_true",
                   help="only measure the GPU rows into bench.json (on a machine lent for that; the CPU rows stay)")
    p.add_argument("--objectives-only", action="store_true",
                   help="only re-measure the objectives' step times (rws and vimco at K = 5 vs wake_sleep)")
    p.add_argument("--child", choices=["train", "eval"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.child:
        return child(args.child, args)
    if args.memory_only or args.gpu_only or args.objectives_only:
        result = json.loads((args.out / "bench.json").read_text())
        if args.objectives_only:
            result["objective_step_seconds"] = objective_steps(args.train_repeats)
            threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
            result["objectives_command"] = f"{threads}python -m scripts.bench " + " ".join(args.argv)
        if args.memory_only:
            result.update(train_peak_rss_mb=peak_rss("train", args), eval_peak_rss_mb=peak_rss("eval", args))
        if args.gpu_only:
            if not torch.cuda.is_available():
                p.error("--gpu-only needs a CUDA device and this machine has none")
            result["gpu_epoch_seconds"] = device_epochs(args, torch.device("cuda"))
            result["gpu_command"] = "python -m scripts.bench --gpu-only"
        return save(result, args.out)
    with tempfile.TemporaryDirectory(prefix="coupled-bench-") as runs:  # the framework arm's runs (78 MB)
        save(measure(args, runs), args.out)


def save(result: dict, out: Path) -> None:
    """reports/bench.json and the BENCH.md generated from it; the table goes to stdout too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, out / "BENCH.md")
    print((out / "BENCH.md").read_text())


def measure(args, runs: str) -> dict:
    """Every measurement of the table, the framework arm's runs going to `runs`."""
    data_epoch(args)  # warm the decoded-image cache
    plain_epoch(args, compiled=True)  # compile once, outside the timings
    fw, bare, manual, plain, compiled, data, data_grey = [], [], [], [], [], [], []
    for r in range(args.train_repeats):  # A/B interleaved, order alternating
        arms = [(plain, plain_epoch), (fw, lambda a: framework_epoch(a, runs)), (bare, bare_lightning_epoch),
                (manual, lambda a: bare_lightning_epoch(a, manual=True)),
                (compiled, lambda a: plain_epoch(a, compiled=True))]
        for times, fn in arms if r % 2 == 0 else arms[::-1]:
            times.append(fn(args))
        for _ in range(DATA_EPOCHS_PER_REPEAT):  # a data epoch is short: more samples steady its median
            data.append(data_epoch(args))
            data_grey.append(data_epoch(args, binarize="none"))
        print(f"[bench] repeat {r + 1}: plain {plain[-1]:.2f}s framework {fw[-1]:.2f}s bare Lightning "
              f"{bare[-1]:.2f}s (manual {manual[-1]:.2f}s) compiled {compiled[-1]:.2f}s "
              f"data {data[-1]:.3f}s", flush=True)
    ratios = [f / p_ for f, p_ in zip(fw, plain)]
    framework_bare = [f / b for f, b in zip(fw, bare)]
    overhead = lightning_step_overhead(args, args.train_repeats)

    torch.manual_seed(0)
    net = CoupledSigmoidNet(SIZES)
    x, y = eval_inputs(args, args.eval_images)
    samples = args.eval_images * 1000
    examples, per_example = block_shape(net, 1000)
    rows = examples * per_example  # the rows of one of log_likelihood's blocks
    ll_t, mm_t = [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        net.log_likelihood(x, y, 1000)
        ll_t.append(time.perf_counter() - t0)
        mm_t.append(matmul_seconds(net, rows, samples))
        print(f"[bench] eval repeat {r + 1}: log_likelihood {ll_t[-1]:.2f}s matmul {mm_t[-1]:.2f}s", flush=True)
    flops = ll_matmul_flops(SIZES, samples)
    fractions = [m / t for m, t in zip(mm_t, ll_t)]

    return {
        "train_ratio": statistics.median(ratios),
        # the framework's own cost: the same module through `coupled fit` against a bare pl.Trainer
        "framework_bare_ratio": statistics.median(framework_bare),
        "train_epoch_seconds": {"framework": statistics.median(fw), "plain": statistics.median(plain),
                                "bare_lightning": statistics.median(bare),
                                "bare_lightning_manual": statistics.median(manual),
                                "plain_compiled": statistics.median(compiled)},
        "compiled_ratio": statistics.median([c / p_ for c, p_ in zip(compiled, plain)]),
        "bare_lightning_ratio": statistics.median([b / p_ for b, p_ in zip(bare, plain)]),
        "bare_lightning_manual_ratio": statistics.median([m / p_ for m, p_ in zip(manual, plain)]),
        # Lightning's own cost per step (LinearProbe) over the plain step: the ratio no Lightning run can beat
        "lightning_step_overhead_us": overhead["seconds_per_step"] * 1e6,
        "lightning_floor_ratio": 1 + overhead["seconds_per_step"] * overhead["steps"] / statistics.median(plain),
        "data_fraction": statistics.median(data) / statistics.median(fw),
        "data_epoch_seconds": statistics.median(data),
        "data_fraction_without_binarization": statistics.median(data_grey) / statistics.median(fw),
        "eval_flops_fraction": statistics.median(fractions),
        "eval": {"images": args.eval_images, "K": 1000, "seconds": statistics.median(ll_t),
                 "gflops_achieved": flops / statistics.median(ll_t) / 1e9,
                 "gflops_matmul": flops / statistics.median(mm_t) / 1e9},
        "objective_step_seconds": objective_steps(args.train_repeats),
        "train_peak_rss_mb": peak_rss("train", args),
        "eval_peak_rss_mb": peak_rss("eval", args),
        "gpu_epoch_seconds": device_epochs(args, torch.device("cuda")) if torch.cuda.is_available() else None,
        "repeats": args.repeats,
        "train_repeats": args.train_repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "command": "make bench  # = python -m scripts.bench " + " ".join(args.argv),
    }


def write_markdown(r: dict, path: Path) -> None:
    rows = [
        ("training: framework / plain epoch", f"{r['train_ratio']:.3f}x", "≤ 1.05x",
         f"{r['train_epoch_seconds']['framework']:.2f} s vs {r['train_epoch_seconds']['plain']:.2f} s"),
    ]
    if "framework_bare_ratio" in r:
        rows.append(("training: framework / bare pl.Trainer epoch (same module)", f"{r['framework_bare_ratio']:.3f}x",
                     "≤ 1.03x", f"{r['train_epoch_seconds']['framework']:.2f} s vs "
                     f"{r['train_epoch_seconds']['bare_lightning']:.2f} s: CLI, W&B offline, bar, default callbacks"))
    if "bare_lightning_ratio" in r:
        rows.append(("training: bare pl.Trainer / plain epoch", f"{r['bare_lightning_ratio']:.3f}x", "",
                     f"{r['train_epoch_seconds']['bare_lightning']:.2f} s: this module, no logger, bar or callbacks"))
    if "bare_lightning_manual_ratio" in r:
        rows.append(("training: the same, manual optimization / plain epoch",
                     f"{r['bare_lightning_manual_ratio']:.3f}x", "",
                     f"{r['train_epoch_seconds']['bare_lightning_manual']:.2f} s: no optimizer closure"))
    if "lightning_floor_ratio" in r:
        rows.append(("training: Lightning's own cost per step / plain step", f"{r['lightning_floor_ratio']:.3f}x",
                     "", f"{r['lightning_step_overhead_us']:.0f} µs a step: bare pl.Trainer vs loop on a "
                     "784→10 linear model"))
    if "compiled_ratio" in r:
        rows.append(("training: plain loop, objective through torch.compile / eager", f"{r['compiled_ratio']:.3f}x",
                     "", f"{r['train_epoch_seconds']['plain_compiled']:.2f} s: what `--model.compile true` buys"))
    steps = r.get("objective_step_seconds")
    if steps:
        where = f"; `{r['objectives_command']}`" if r.get("objectives_command") else ""
        for arm in ("rws_K5", "vimco_K5"):
            rows.append((f"training: {arm.replace('_K5', '')} step (K = 5) / wake_sleep step",
                         f"{steps[arm] / steps['wake_sleep']:.2f}x", "≤ 5x" if arm == "rws_K5" else "",
                         f"{1e3 * steps[arm]:.1f} ms vs {1e3 * steps['wake_sleep']:.1f} ms, batch 128{where}"))
    rows += [
        ("data: DataModule epoch / training epoch", f"{r['data_fraction']:.2%}", "≤ 2%",
         f"{r['data_epoch_seconds']:.3f} s; without the Bernoulli draw (binarize none): "
         f"{r['data_fraction_without_binarization']:.2%}"),
        ("evaluation: log_likelihood FLOP/s / matmul", f"{r['eval_flops_fraction']:.0%}", "≥ 70%",
         f"{r['eval']['gflops_achieved']:.0f} vs {r['eval']['gflops_matmul']:.0f} GFLOP/s "
         f"({r['eval']['images']} images, K = 1000)"),
        ("memory: peak RSS, training epoch", f"{r['train_peak_rss_mb']:.0f} MB", "", ""),
        ("memory: peak RSS, evaluation", f"{r['eval_peak_rss_mb']:.0f} MB", "≤ 4 GiB", ""),
    ]
    gpu = r.get("gpu_epoch_seconds")
    gpu_command = r.get("gpu_command", r["command"])
    if gpu:
        for k, v in gpu.items():
            if k.startswith("bs"):
                value = f"{v:.3f} s" if isinstance(v, float) else str(v).replace("|", "/")
                target = "≤ 0.3 s" if k.startswith("bs128_") else ""
                rows.append((f"GPU epoch, {k}", value, target, f"{gpu['device']}; `{gpu_command}`"))
        rows.append(("GPU FLOP floor per epoch", f"{gpu['flop_floor_seconds']:.3f} s", "", gpu["device"]))
    lines = ["# Benchmarks", "",
             f"Produced by `{r['command']}` on {r['machine']['processor']}, {r['machine']['cpus']} CPUs, torch "
             f"{r['machine']['torch']}; medians of A/B-interleaved repeats: {r.get('train_repeats', r['repeats'])} "
             f"for training and data, {r['repeats']} for evaluation.", "",
             "| measure | value | target | detail |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if not gpu:
        lines += ["", "GPU: not measured (no GPU on the machine that ran this)."]
    notes = path.with_name("BENCH_NOTES.md")
    if notes.exists():
        lines += ["", notes.read_text()]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
