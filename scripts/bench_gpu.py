"""The GPU section of `make bench` (scripts/bench.py): plain-loop epochs eager, compiled and as CUDA graphs,
next to the epoch's FLOP floor. It runs on the CPU too (the tests do), so a GPU session does not debug it."""

from __future__ import annotations

import platform
import time

import torch

from datamodules import MNISTDataModule
from lightning_modules import OBJECTIVES, CoupledSigmoidNet, make_optimizer
from scripts.bench_arms import SIZES, mnist_dir


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


