"""Probe a lever from a trained checkpoint before paying for a run: fine-tune copies of it for a few epochs, each
arm with some objective options changed, and read each on a budget what the full test reads, on the validation
images (levers are picked without the test set): accuracy, own log p (K samples on the first validation images,
binarized once), the walk down the layers
(``scripts.sample_layers``) and, with ``--reference``, the reference CNN on binary samples. A `control` arm
(nothing changed) comes first, so the fine-tune's own drift is read beside each lever's.

    python -m scripts.probe CKPT --arm c3:sample_consistency_weight=3 [--arm NAME:KEY=VALUE,KEY=VALUE ...]
        [--epochs 1] [--lr 1e-4] [--per-class 500] [--images 1000] [--num-samples 100] [--reference CKPT]
        [--data-dir DIR]

A probe only ranks levers: a fine-tune at a constant learning rate from the end of a run is not the run
trained with the lever from the start, and its numbers are not the test's (fewer images, samples and K).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import torch
import yaml
from torch import Tensor

from callbacks.sample_quality import class_samples, sample_accuracy
from coupled import load
from lightning_modules.model import bernoulli, fixed_binarize
from lightning_modules.objectives import check_objective_kwargs
from scripts.sample_layers import layer_consistency


def parse_arm(spec: str) -> tuple[str, dict]:
    """``NAME:KEY=VALUE,KEY=VALUE`` -> (NAME, {KEY: VALUE}), each value read as YAML (numbers, true, null)."""
    name, sep, rest = spec.partition(":")
    pairs = [p.partition("=") for p in rest.split(",") if p]
    if not name or not sep or any(not k or not eq for k, eq, _ in pairs):
        raise SystemExit(f"--arm {spec!r}: write NAME:KEY=VALUE[,KEY=VALUE...], e.g. c3:sample_consistency_weight=3")
    return name, {k: yaml.safe_load(v) for k, _, v in pairs}


def finetune(learner, x: Tensor, y: Tensor, changes: dict, epochs: float, lr: float, batch_size: int = 128,
             seed: int = 0) -> torch.nn.Module:
    """A copy of ``learner.net`` trained ``epochs`` passes over (x in [0, 1], y) by Adam at a constant ``lr`` on the
    learner's objective with ``changes`` to its options; images binarized afresh each step, as in training."""
    kwargs = {**learner.objective_kwargs, **changes}
    check_objective_kwargs(learner.hparams.objective, kwargs)
    net = copy.deepcopy(learner.net).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    data, g = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)  # every arm: same images
    per_epoch = max(1, x.shape[0] // batch_size)
    extra = {"generator": g} if learner.stochastic_objective else {}
    for step in range(round(epochs * per_epoch)):
        if step % per_epoch == 0:
            order = torch.randperm(x.shape[0], generator=data)
        idx = order[(step % per_epoch) * batch_size:(step % per_epoch + 1) * batch_size]
        loss = learner.objective(net, bernoulli(x[idx], data), y[idx], **kwargs, **extra)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def measure(net, held_out: tuple[Tensor, Tensor], images: int, num_samples: int, per_class: int,
            classifier=None, seed: int = 0) -> dict:
    """Accuracy, own log p on the first ``images`` held-out images, the walk down, and the reference's score."""
    x, y = held_out
    xb = fixed_binarize(x[:images], seed)
    out = {"acc": (net.recognize(x).argmax(-1) == y).float().mean().item(),
           "log p": net.log_likelihood(xb, y[:images], num_samples,
                                       generator=torch.Generator().manual_seed(seed)).mean().item(),
           "walk": layer_consistency(net, per_class, seed)}
    if classifier is not None:
        out["reference"] = sample_accuracy(*class_samples(net, per_class, seed), classifier)
    return out


def row(name: str, changes: dict, m: dict, seconds: float) -> str:
    walk = " / ".join(f"{a:.1%}" for a in m["walk"])
    ref = f"{m['reference']:.1%}" if "reference" in m else "–"
    what = ", ".join(f"{k} {v}" for k, v in changes.items()) or "–"
    return f"| {name} | {what} | {m['acc']:.2%} | {m['log p']:.2f} | {walk} | {ref} | {seconds:.0f} |"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt")
    p.add_argument("--arm", action="append", default=[], help="NAME:KEY=VALUE[,KEY=VALUE...] (repeat)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--num-samples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", help="a reference CNN checkpoint: its accuracy on the binary samples")
    p.add_argument("--data-dir", default=os.environ.get("COUPLED_DATA_DIR"), help="the folder holding mnist/")
    args = p.parse_args(argv)
    arms = [("control", {})] + [parse_arm(a) for a in args.arm]
    from datamodules import MNISTDataModule

    dm = MNISTDataModule(data_dir=str(Path(args.data_dir) / "mnist") if args.data_dir else None)
    (xtr, ytr), (xva, yva) = dm.split_tensors("train"), dm.split_tensors("val")
    learner = load(args.ckpt)
    dtype = learner.net.W[0].dtype
    xtr, val = xtr.to(dtype) / 255, (xva.to(dtype) / 255, yva)
    clf = None
    if args.reference:
        from lightning_modules.reference import ReferenceCNN

        clf = ReferenceCNN.for_scoring(args.reference)
    budget = (args.images, args.num_samples, args.per_class, clf, args.seed)
    print(f"# python -m scripts.probe {args.ckpt} " + " ".join(f"--arm {a}" for a in args.arm)
          + f" --epochs {args.epochs:g} --lr {args.lr:g}; on the validation images; log p: K = {args.num_samples} on "
          f"{args.images} of them; "
          f"walk: from x0, x1, ...; {args.per_class} samples per class")
    print("| arm | changed | val acc | log p | walk | reference on binary samples | seconds |")
    print("|---" * 7 + "|")
    print(row("checkpoint", {}, measure(learner.net, val, *budget), 0), flush=True)
    for name, changes in arms:
        t0 = time.perf_counter()
        net = finetune(learner, xtr, ytr, changes, args.epochs, args.lr, seed=args.seed)
        print(row(name, changes, measure(net, val, *budget), time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    main()
