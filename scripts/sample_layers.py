"""Where do a model's ancestral samples lose their class? For each layer k, the recognition network's accuracy on
states sampled from the generator down to layer k (y -> x_(L-1) -> ... -> x_k), recognised from x_k upward by the
deterministic pass; k = 0 is the usual self-consistency of binary samples. Also how class-dependent the top
layer's generative distribution p(x_(L-1) | y) is.

    python -m scripts.sample_layers NAME=CKPT [NAME=CKPT ...] [--per-class 500] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch

from coupled import load
from lightning_modules.model import CoupledSigmoidNet


@torch.no_grad()
def layer_consistency(net: CoupledSigmoidNet, per_class: int, seed: int = 0) -> list[float]:
    """[accuracy from x_0, from x_1, ..., from x_(L-1)] on `per_class` ancestral samples of each class."""
    y = torch.arange(net.num_classes).repeat(per_class)
    states = net.sample_down(y, torch.Generator().manual_seed(seed))  # [x0, x1, ..., onehot(y)]
    out = []
    for k in range(net.num_layers):
        h = states[k]
        for j in range(k, net.num_layers):
            a = net.up_logits(j, h)
            h = torch.sigmoid(a) if j < net.num_layers - 1 else a
        out.append((h.argmax(-1) == y).float().mean().item())
    return out


@torch.no_grad()
def top_spread(net: CoupledSigmoidNet) -> tuple[float, float]:
    """(mean of p(x_top = 1 | y), mean |p - its mean over classes|) over the top hidden layer's units."""
    p = torch.sigmoid(net.down_logits(net.num_layers - 1, net.onehot(torch.arange(net.num_classes))))
    return p.mean().item(), (p - p.mean(0)).abs().mean().item()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="NAME=CKPT pairs")
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for i, spec in enumerate(args.models):
        name, _, path = spec.partition("=")
        net = load(path).net
        if i == 0:
            print("| model | " + " | ".join(f"from x{k}" for k in range(net.num_layers)) + " | mean p(top=1|y) "
                  "| class spread |")
            print("|---" * (net.num_layers + 3) + "|")
        accs, (mean, spread) = layer_consistency(net, args.per_class, args.seed), top_spread(net)
        print(f"| {name} | " + " | ".join(f"{a:.1%}" for a in accs) + f" | {mean:.3f} | {spread:.3f} |", flush=True)


if __name__ == "__main__":
    main()
