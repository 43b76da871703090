"""scripts/sample_layers.py: the class kept by ancestral samples at each layer."""

from __future__ import annotations

import torch

from lightning_modules.model import CoupledSigmoidNet
from scripts.sample_layers import layer_consistency, top_spread


def _net(scale: float) -> CoupledSigmoidNet:
    """Sizes [2, 2, 2], every W = scale * (+1 on the diagonal, -1 off it), zero biases: at a large scale each
    layer copies the class down (generation) and up (recognition); at 0 every state is a fair coin."""
    net = CoupledSigmoidNet([2, 2, 2])
    with torch.no_grad():
        for k in range(net.num_layers):
            net.W[k].copy_(scale * (2 * torch.eye(2) - 1))
            net.b[k].zero_()
            net.c[k].zero_()
    return net


def test_a_net_that_copies_the_class_keeps_it_at_every_layer():
    assert layer_consistency(_net(20.0), per_class=200) == [1.0, 1.0]  # from x0 and from x1
    mean, spread = top_spread(_net(20.0))
    assert abs(mean - 0.5) < 1e-6 and abs(spread - 0.5) < 1e-6  # p(top|y) is one-hot per class


def test_a_net_without_weights_keeps_no_class():
    accs = layer_consistency(_net(0.0), per_class=2000)
    assert len(accs) == 2 and all(abs(a - 0.5) < 0.05 for a in accs)  # chance, from x0 and from x1
    assert top_spread(_net(0.0)) == (0.5, 0.0)
