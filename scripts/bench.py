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
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from datamodules import MNISTDataModule  # noqa: E402
from lightning_modules import OBJECTIVES, CoupledSigmoidNet, GenerativeLearner, make_optimizer  # noqa: E402

SIZES = [784, 512, 512, 10]
DATA_EPOCHS_PER_REPEAT = 3


def mnist_dir(args) -> str | None:
    if args.data_dir and (Path(args.data_dir) / "mnist").is_dir():
        return str(Path(args.data_dir) / "mnist")
    return None


# ---- training: framework vs plain loop ----
class EpochTimer(pl.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self._t0)


def framework_epoch(args, runs_dir: str) -> float:
    """One training epoch through `coupled fit` (CLI, W&B offline, progress bar, default callbacks)."""
    from lightning_modules.cli import CoupledCLI, trainer_defaults

    os.environ.pop("COUPLED_RUN_ID", None)  # a new run each time (the CLI exports its run id for DDP children)
    timer = EpochTimer()
    defaults = trainer_defaults()
    defaults["callbacks"] = [*defaults["callbacks"], timer]
    argv = ["fit", "--config", str(ROOT / "configs" / "mnist.yaml"), "--trainer.max_epochs", "1",
            "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
            "--test_after_fit", "false", "--runs_dir", runs_dir, "--trainer.enable_progress_bar", "true",
            "--trainer.accelerator", "cpu"]  # the CPU rows stay CPU rows on a machine with a GPU
    if mnist_dir(args):
        argv += ["--data.data_dir", mnist_dir(args)]
    CoupledCLI(args=argv, trainer_defaults=defaults)
    return timer.seconds[0]


class ManualStepLearner(GenerativeLearner):
    """The learner with manual optimization: its training_step runs zero_grad, backward and step itself, so
    Lightning's optimizer closure is skipped (and with it Lightning's gradient clipping and accumulation)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        out = super().training_step(batch, batch_idx)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(out["loss"])
        opt.step()
        return out


def bare_lightning_epoch(args, manual: bool = False) -> float:
    """The floor of any Lightning run: the same LightningModule and DataModule in a bare pl.Trainer (no
    logger, progress bar, checkpointing or callbacks other than the timer); `manual`: manual optimization."""
    dm = MNISTDataModule(data_dir=mnist_dir(args))
    torch.manual_seed(0)
    model = (ManualStepLearner if manual else GenerativeLearner)(
        hidden_sizes=SIZES[1:-1], input_dim=SIZES[0], num_classes=SIZES[-1], objective="symmetric", lr=1e-3)
    return bare_trainer_epoch(model, dm)


def bare_trainer_epoch(model: pl.LightningModule, dm) -> float:
    """Seconds of one training epoch in a pl.Trainer with no logger, progress bar, checkpointing or callback
    other than the timer."""
    timer = EpochTimer()
    pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
               callbacks=[timer]).fit(model, datamodule=dm)
    return timer.seconds[0]


def plain_loop_epoch(dm, loss_fn, opt) -> float:
    """Seconds of one epoch of a plain loop over the DataModule's training batches: transform, loss, step."""
    t0 = time.perf_counter()
    for x, y in dm.train_dataloader():
        loss = loss_fn(dm.transform(x, train=True), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


class LinearProbe(pl.LightningModule):
    """A 784 -> 10 softmax regression: a step with almost no work, so a bare Trainer's epoch minus a plain
    loop's is Lightning's own cost per step."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(SIZES[0], SIZES[-1])

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.linear(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def lightning_step_overhead(args, repeats: int) -> dict:
    """Seconds per step that a bare pl.Trainer adds to a plain loop, on a model whose step costs ~nothing."""
    dm = MNISTDataModule(data_dir=mnist_dir(args))
    dm.setup("fit")
    steps = len(dm.train_dataloader())
    bare, plain = [], []
    for _ in range(repeats):
        torch.manual_seed(0)
        bare.append(bare_trainer_epoch(LinearProbe(), dm))
        model = LinearProbe()
        plain.append(plain_loop_epoch(dm, lambda x, y, m=model: m.training_step((x, y), 0),
                                      model.configure_optimizers()))
    return {"seconds_per_step": (statistics.median(bare) - statistics.median(plain)) / steps, "steps": steps}


def plain_epoch(args, compiled: bool = False) -> float:
    """The same epoch as a bare loop: same model, DataModule batches, Adam, objective (through torch.compile
    if `compiled`, as `--model.compile true` runs it; the first call of a process compiles)."""
    dm = MNISTDataModule(data_dir=mnist_dir(args))
    dm.setup("fit")
    torch.manual_seed(0)
    net = CoupledSigmoidNet(SIZES)
    opt = make_optimizer(net.parameters(), "adam", lr=1e-3)  # the framework's optimizer (fused Adam)
    objective = torch.compile(OBJECTIVES["symmetric"]) if compiled else OBJECTIVES["symmetric"]
    return plain_loop_epoch(dm, lambda x, y: objective(net, x, y)["loss"], opt)


def data_epoch(args, binarize: str = "dynamic") -> float:
    dm = MNISTDataModule(data_dir=mnist_dir(args), binarize=binarize)
    dm.setup("fit")
    t0 = time.perf_counter()
    for x, _ in dm.train_dataloader():
        dm.transform(x, train=True)
    return time.perf_counter() - t0


# ---- evaluation: log_likelihood vs matmul of the same shapes ----
def eval_inputs(args, n: int):
    dm = MNISTDataModule(data_dir=mnist_dir(args))
    x, y = dm.split_tensors("test")
    from lightning_modules import fixed_binarize

    return fixed_binarize(dm.transform(x[:n], train=False)), y[:n]


def ll_matmul_flops(sizes: list[int], samples: int) -> float:
    """Matmul FLOPs of the importance-sampled estimate per sample: W1^T down to pixels, up and down between
    hidden layers (the per-example terms are negligible)."""
    d = sizes[:-1]
    per = d[1] * d[0] + 2 * sum(d[j] * d[j + 1] for j in range(1, len(d) - 1))
    return 2.0 * per * samples


def matmul_seconds(net: CoupledSigmoidNet, rows: int, samples: int) -> float:
    """torch.matmul on the shapes log_likelihood multiplies, as many rows in total."""
    h = [torch.rand(rows, s).round() for s in net.sizes[:-1]]
    todo, t0 = samples, time.perf_counter()
    while todo > 0:
        torch.matmul(h[1], net.W[0])
        for j in range(1, net.num_layers - 1):
            torch.matmul(h[j], net.W[j].t())
            torch.matmul(h[j + 1], net.W[j])
        todo -= rows
    return (time.perf_counter() - t0) * samples / (samples - todo)


# ---- memory: fresh processes ----
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
    cmd = [sys.executable, __file__, "--child", kind, "--eval-images", str(args.eval_images)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    env = {k: v for k, v in os.environ.items() if k != "COUPLED_RUN_ID"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
    return json.loads(out)["peak_rss_mb"]


# ---- GPU ----
def device_epochs(args, dev: torch.device, batch_sizes=(128, 1024), epochs: int = 3, val_size: int = 5000) -> dict:
    """Plain-loop epochs of `symmetric` with the data on `dev` (best of the epochs after the first, which warms
    up and compiles), per batch size and mode:

    - eager: the framework's optimizer (fused Adam);
    - compile: the objective through torch.compile, as `--model.compile true` runs it;
    - cudagraphs (CUDA only): the whole step through torch.compile's "reduce-overhead" mode, which replays
      it as CUDA graphs, with a capturable Adam.

    A mode that fails records its error instead of stopping the benchmark. Next to them: the FLOP floor, the
    epoch's matmul FLOPs at the device's measured matmul rate.
    """
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    dm = MNISTDataModule(data_dir=mnist_dir(args), val_size=val_size)
    x_all, y_all = (t.to(dev) for t in dm.split_tensors("train"))
    sizes = [x_all.shape[1], *SIZES[1:-1], dm.num_classes]
    symmetric = OBJECTIVES["symmetric"]
    out: dict = {}
    for bs in batch_sizes:
        for mode in ["eager", "compile"] + (["cudagraphs"] if dev.type == "cuda" else []):
            torch.manual_seed(0)
            net = CoupledSigmoidNet(sizes).to(dev)
            if mode == "cudagraphs":
                opt = torch.optim.Adam(net.parameters(), lr=1e-3, capturable=True)
            else:
                opt = make_optimizer(net.parameters(), "adam", lr=1e-3)
            objective = torch.compile(symmetric) if mode == "compile" else symmetric

            def step(x, y, net=net, opt=opt, objective=objective):
                loss = objective(net, x, y)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            fn = torch.compile(step, mode="reduce-overhead") if mode == "cudagraphs" else step
            times = []
            try:
                for _ in range(epochs):
                    perm = torch.randperm(len(y_all), device=dev)
                    sync()
                    t0 = time.perf_counter()
                    for i in range(0, len(perm) - bs + 1, bs):
                        idx = perm[i : i + bs]
                        fn(dm.transform(x_all[idx], train=True), y_all[idx])
                    sync()
                    times.append(time.perf_counter() - t0)
                out[f"bs{bs}_{mode}"] = min(times[1:] or times)
            except Exception as e:  # noqa: BLE001 - a mode the device or torch build cannot run is a result
                out[f"bs{bs}_{mode}"] = f"failed: {type(e).__name__}: {e}"[:200]
    a = torch.randn(8192, sizes[0], device=dev)
    b = torch.randn(sizes[0], sizes[1], device=dev)
    sync()
    t0 = time.perf_counter()
    for _ in range(50):
        a @ b
    sync()
    rate = 50 * 2 * a.shape[0] * a.shape[1] * b.shape[1] / (time.perf_counter() - t0)
    # forward and backward (3x the forward's FLOPs) of both directions (2x), a multiply-add being 2 FLOPs
    flops = 3 * 2 * 2 * len(y_all) * sum(sizes[k] * sizes[k + 1] for k in range(len(sizes) - 1))
    out["flop_floor_seconds"] = flops / rate
    out["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    return out


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
            result["objectives_command"] = f"{threads}python scripts/bench.py " + " ".join(args.argv)
        if args.memory_only:
            result.update(train_peak_rss_mb=peak_rss("train", args), eval_peak_rss_mb=peak_rss("eval", args))
        if args.gpu_only:
            if not torch.cuda.is_available():
                p.error("--gpu-only needs a CUDA device and this machine has none")
            result["gpu_epoch_seconds"] = device_epochs(args, torch.device("cuda"))
            result["gpu_command"] = "python scripts/bench.py --gpu-only"
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
    overhead = lightning_step_overhead(args, args.train_repeats)

    torch.manual_seed(0)
    net = CoupledSigmoidNet(SIZES)
    x, y = eval_inputs(args, args.eval_images)
    samples = args.eval_images * 1000
    examples, per_example = net.block_shape(1000)
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
        "command": "make bench  # = python scripts/bench.py " + " ".join(args.argv),
    }


def write_markdown(r: dict, path: Path) -> None:
    rows = [
        ("training: framework / plain epoch", f"{r['train_ratio']:.3f}x", "≤ 1.05x",
         f"{r['train_epoch_seconds']['framework']:.2f} s vs {r['train_epoch_seconds']['plain']:.2f} s"),
    ]
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
