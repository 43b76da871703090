"""A/B of the fitted proposal's start: fresh (random) against own (a copy of the pair's recognition network).

    python scripts/proposal_init.py CKPT [--steps 1000,3000] [--images 1000] [--K 10]

Prints the K-sample estimate of log p(x|y) on the first --images MNIST test images (binarized once) with the
model's own recognition network, then with proposals fitted from each start for each number of steps.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import coupled
from datamodules import MNISTDataModule
from lightning_modules import fixed_binarize
from lightning_modules.fitted import fit_proposal


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt")
    p.add_argument("--steps", default="1000,3000")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--data-dir", default=os.environ.get("COUPLED_DATA_DIR"))
    args = p.parse_args(argv)
    dm = MNISTDataModule(data_dir=str(Path(args.data_dir) / "mnist") if args.data_dir else None)
    x_test, y_test = dm.split_tensors("test")
    x_train, y_train = dm.split_tensors("train")
    model = coupled.load(args.ckpt)
    x = fixed_binarize(x_test[: args.images].float() / 255, model.hparams.seed)
    y = y_test[: args.images]

    def estimate(net) -> float:
        return net.log_likelihood(x, y, args.K, generator=torch.Generator().manual_seed(0)).mean().item()

    print(f"own proposal: {estimate(model.net):.2f} nats (K = {args.K}, {args.images} test images)")
    for init in ("fresh", "own"):
        for steps in (int(s) for s in args.steps.split(",")):
            t0 = time.perf_counter()
            q = fit_proposal(model.net, x_train.float() / 255, y_train, steps=steps, init=init, lr=model.hparams.lr)
            print(f"fitted from {init}, {steps} steps: {estimate(q):.2f} nats ({time.perf_counter() - t0:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
