"""Where do a model's ancestral samples lose their class? For each layer k, the recognition network's accuracy on
states sampled from the generator down to layer k (y -> x_(L-1) -> ... -> x_k), recognised from x_k upward by the
deterministic pass; k = 0 is the usual self-consistency of binary samples. Also how class-dependent the top
layer's generative distribution p(x_(L-1) | y) is, and (with test images) the same walk down started from the
top state q gives a real image instead of one drawn from p(x_(L-1) | y): if that keeps the class and the prior's
walk does not, the samples lose it to the factorial prior (its holes), not to the layers below.

With `--reference CKPT` it also scores the test's own binary samples (seed, per class) by that reference CNN, and
with test images it gives the test accuracy of both passes: a check of a run still training, without its
likelihoods. With both it first prints the reference CNN's own accuracy on the test images, grey and binarized
as the test's likelihood reads them (`fixed_binarize`): the ceiling a sample score is read against.

    python -m scripts.sample_layers NAME=CKPT [NAME=CKPT ...] [--per-class 500] [--seed 0] [--data-dir DIR]
                                    [--reference CKPT]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch import Tensor

from callbacks.sample_quality import class_samples, sample_accuracy
from coupled import load
from lightning_modules.model import METHODS, CoupledSigmoidNet, bernoulli, fixed_binarize


def _accuracies(net: CoupledSigmoidNet, states: list[Tensor], y: Tensor) -> list[float]:
    """The deterministic pass's accuracy from each of states [x0, .., x_m] upward."""
    out = []
    for k, h in enumerate(states):
        for j in range(k, net.num_layers):
            a = net.up_logits(j, h)
            h = torch.sigmoid(a) if j < net.num_layers - 1 else a
        out.append((h.argmax(-1) == y).float().mean().item())
    return out


@torch.no_grad()
def layer_consistency(net: CoupledSigmoidNet, per_class: int, seed: int = 0) -> list[float]:
    """[accuracy from x_0, from x_1, ..., from x_(L-1)] on `per_class` ancestral samples of each class."""
    y = torch.arange(net.num_classes).repeat(per_class)
    states = net.sample_down(y, torch.Generator().manual_seed(seed))  # [x0, x1, ..., onehot(y)]
    return _accuracies(net, states[:-1], y)


@torch.no_grad()
def posterior_top_consistency(net: CoupledSigmoidNet, x: Tensor, y: Tensor, seed: int = 0) -> list[float]:
    """[accuracy from x_0, .., from x_(L-2)] of walks down from x_(L-1) ~ q(. | x) of real images x (labels y),
    instead of from p(x_(L-1) | y): the layers below the top exactly as in `layer_consistency`."""
    g = torch.Generator().manual_seed(seed)
    h = net.sample_up(x, g, layers=net.num_layers - 1)[-1]
    states = []
    for k in reversed(range(net.num_layers - 1)):
        h = bernoulli(torch.sigmoid(net.down_logits(k, h)), g)
        states.append(h)
    return _accuracies(net, states[::-1], y)


@torch.no_grad()
def pass_accuracies(net: CoupledSigmoidNet, x: Tensor, y: Tensor) -> list[float]:
    """Accuracy on (x, y) of the deterministic and of the mean-variance pass."""
    return [(net.recognize(x, m).argmax(-1) == y).float().mean().item() for m in METHODS]


@torch.no_grad()
def top_spread(net: CoupledSigmoidNet) -> tuple[float, float]:
    """(mean of p(x_top = 1 | y), mean |p - its mean over classes|) over the top hidden layer's units."""
    p = torch.sigmoid(net.down_logits(net.num_layers - 1, net.onehot(torch.arange(net.num_classes))))
    return p.mean().item(), (p - p.mean(0)).abs().mean().item()


@torch.no_grad()
def reference_ceiling(classifier: torch.nn.Module, x: Tensor, y: Tensor, seed: int = 0) -> tuple[float, float]:
    """The classifier's accuracy on the grey images x (in [0, 1], labels y), and on their one fixed binarization,
    the test set `test/log_likelihood` reads: binary samples are scored against the second."""
    return sample_accuracy(x, y, classifier), sample_accuracy(fixed_binarize(x, seed), y, classifier)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="NAME=CKPT pairs")
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=os.environ.get("COUPLED_DATA_DIR"),
                   help="folder holding mnist/ (the test images for the walk down from q's top state); "
                        "'' to skip it")
    p.add_argument("--reference", help="a reference CNN checkpoint: its accuracy on the binary samples")
    args = p.parse_args(argv)
    clf = None
    if args.reference:
        from lightning_modules.reference import ReferenceCNN

        clf = ReferenceCNN.for_scoring(args.reference)
    test = None
    if args.data_dir:
        from datamodules import MNISTDataModule  # only the posterior walk needs the data

        x, y = MNISTDataModule(data_dir=str(Path(args.data_dir) / "mnist")).split_tensors("test")
        test = (x.float() / 255, y)
        if clf:
            grey, binary = reference_ceiling(clf, *test, args.seed)
            print(f"# reference CNN on the test images: {grey:.2%} grey, {binary:.2%} binarized (seed {args.seed})")
    for i, spec in enumerate(args.models):
        name, _, path = spec.partition("=")
        net = load(path).net
        L = net.num_layers
        if i == 0:
            post = "".join(f" from x{k}, top from q |" for k in range(L - 1)) if test else ""
            post += " test acc: deterministic | mean-variance |" if test else ""
            post += " reference CNN on binary samples |" if clf else ""
            print("| model | " + " | ".join(f"from x{k}" for k in range(L)) + f" |{post} mean p(top=1|y) "
                  "| class spread |")
            print("|---" * (L + 3 + (L + 1 if test else 0) + (1 if clf else 0)) + "|")
        accs, (mean, spread) = layer_consistency(net, args.per_class, args.seed), top_spread(net)
        if test:
            x = test[0].to(net.W[0].dtype)
            accs = accs + posterior_top_consistency(net, x, test[1], args.seed) + pass_accuracies(net, x, test[1])
        if clf:
            accs.append(sample_accuracy(*class_samples(net, args.per_class, args.seed), clf))
        print(f"| {name} | " + " | ".join(f"{a:.1%}" for a in accs) + f" | {mean:.3f} | {spread:.3f} |", flush=True)


if __name__ == "__main__":
    main()
