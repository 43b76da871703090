"""Training steps of a late checkpoint with and without flushing denormals, against a fresh net, in one run.

    python -m scripts.bench_denormals CKPT [--steps 40] [--data-dir DIR]

Late in a long CPU run the epochs slow down: Adam's moments of pixels that are never lit and the saturated pixel
probabilities underflow to denormal floats, and CPU arithmetic on them is many times slower. `GenerativeLearner`
flushes them to zero (`setup`); this measures what that buys on a given checkpoint (its weights and Adam state):
milliseconds per `rws`/objective step on one thread with flush-to-zero off and on, and for a freshly initialised
net of the same sizes, interleaved, with the ratios. Batches: MNIST training images (`--data-dir`, default
$COUPLED_DATA_DIR/mnist) when the checkpoint is a 784-input model and they are there, else random binary images.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import torch

from datamodules import MNISTDataModule
from lightning_modules import OBJECTIVES, CoupledSigmoidNet, GenerativeLearner, make_optimizer
from lightning_modules.learner import flushing_denormals


def batches(sizes: list[int], n: int, data_dir: str | None, batch_size: int = 128) -> list[tuple]:
    if data_dir and sizes[0] == 784 and Path(data_dir).is_dir():
        dm = MNISTDataModule(data_dir=data_dir, batch_size=batch_size)
        dm.setup("fit")
        out = []
        for x, y in dm.train_dataloader():
            out.append((dm.transform(x, train=True), y))
            if len(out) == n:
                return out
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(batch_size, sizes[0], generator=g).round(),
             torch.randint(sizes[-1], (batch_size,), generator=g)) for _ in range(n)]


def ms_per_step(model: GenerativeLearner, net: CoupledSigmoidNet, opt_state: dict | None, data: list, flush: bool,
                lr: float) -> float:
    torch.set_flush_denormal(flush)
    objective, kwargs = OBJECTIVES[model.hparams.objective], dict(model.objective_kwargs)
    if model.stochastic_objective:
        kwargs["generator"] = torch.Generator().manual_seed(0)
    hp = model.hparams  # the checkpoint's own optimizer, so its saved state loads into it
    opt = make_optimizer(net.parameters(), hp.optimizer, lr=lr, weight_decay=hp.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    for i, (x, y) in enumerate([data[0]] * 3 + data):  # three warm-up steps
        if i == 3:
            t0 = time.perf_counter()
        opt.zero_grad()
        objective(net, x, y, **kwargs)["loss"].backward()
        opt.step()
    return (time.perf_counter() - t0) / len(data) * 1e3


def main(argv=None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data-dir", default=os.path.join(os.environ.get("COUPLED_DATA_DIR", ""), "mnist"))
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as one of the runs side by side; the ratio is what is compared
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    model = GenerativeLearner.from_checkpoint(ck, args.ckpt)
    data = batches(model.net.sizes, args.steps, args.data_dir)
    opt_state = ck["optimizer_states"][0]
    lr = opt_state["param_groups"][0]["lr"]
    was_flushing = flushing_denormals()
    times: dict[str, list[float]] = {"late, denormals kept": [], "late, flushed": [], "fresh net": []}
    try:
        for _ in range(args.repeats):  # interleaved, so a change of machine speed hits every arm
            for name, flush in (("late, denormals kept", False), ("late, flushed", True)):
                times[name].append(ms_per_step(model, copy.deepcopy(model.net), opt_state, data, flush, lr))
            torch.manual_seed(0)
            fresh = CoupledSigmoidNet(model.net.sizes, tied=model.net.tied)
            times["fresh net"].append(ms_per_step(model, fresh, None, data, False, lr))
    finally:  # the process as it was
        torch.set_flush_denormal(was_flushing)
        torch.set_num_threads(threads)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"checkpoint {args.ckpt} (epoch {ck.get('epoch')}), {args.steps} steps x {args.repeats}, one thread")
    for k, v in med.items():
        print(f"  {k:22s} {v:7.1f} ms/step")
    print(f"  kept / flushed: {med['late, denormals kept'] / med['late, flushed']:.2f}x; "
          f"flushed / fresh: {med['late, flushed'] / med['fresh net']:.2f}x")
    return med


if __name__ == "__main__":
    main()
