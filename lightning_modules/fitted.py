"""An honest likelihood: importance sampling with a recognition network fitted to the frozen generator.

The own-q estimate of log p(x|y) (`CoupledSigmoidNet.log_likelihood`) is only as tight as the coupled
recognition network is as a proposal, so a low value cannot tell a poor generator from a poor (or merely
inconsistent) proposal. Here the generation network is frozen and a separate, untied recognition network is
fitted to its posterior with the wake-q step of reweighted wake-sleep on the training images; importance
sampling with it at the same K then measures the generator. `fitted - own` is how much likelihood the coupled
pair's own inference leaves on the table, i.e. how inconsistent its two directions are (claim 2).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from .model import CoupledSigmoidNet
from .objectives import sample_q

PROPOSAL_INITS = ("fresh", "own")


def frozen_generator_with_proposal(
    net: CoupledSigmoidNet, init: Literal["fresh", "own"] = "own", seed: int = 0
) -> CoupledSigmoidNet:
    """An untied net whose generation half (V = net's down weights, c, prior) is a frozen copy of `net`'s
    and whose recognition half (W, b) is trainable: Glorot-random (`fresh`) or a copy of `net`'s (`own`)."""
    if init not in PROPOSAL_INITS:
        raise ValueError(f"unknown proposal init {init!r}: choose one of {', '.join(PROPOSAL_INITS)}")
    ref = net.W[0]
    out = CoupledSigmoidNet(net.sizes, tied=False).to(device=ref.device, dtype=ref.dtype)
    g = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for k in range(net.num_layers):
            out.V[k].copy_(net.down_weight(k))
            out.c[k].copy_(net.c[k])
            if init == "own":
                out.W[k].copy_(net.W[k])
                out.b[k].copy_(net.b[k])
            else:
                d_out, d_in = out.W[k].shape
                out.W[k].copy_(torch.randn(d_out, d_in, generator=g) * math.sqrt(2.0 / (d_in + d_out)))
                out.b[k].zero_()
        out.prior_logits.copy_(net.prior_logits.detach())
    for p in [*out.V, *out.c]:
        p.requires_grad_(False)
    return out


def fit_proposal(
    net: CoupledSigmoidNet,
    x_train: Tensor,
    y_train: Tensor,
    steps: int = 2000,
    batch_size: int = 128,
    num_samples: int = 5,
    lr: float = 1e-3,
    init: Literal["fresh", "own"] = "own",
    seed: int = 0,
) -> CoupledSigmoidNet:
    """The frozen generator of `net` with a recognition network fitted by `steps` RWS wake-q steps.

    x_train: grey levels in [0, 1] (or binary), (N, d0), on the device to fit on; each step binarizes a
    random batch afresh (dynamic binarization), so the proposal sees the data the generator was trained on.
    Everything is drawn from generators seeded by `seed`: the same call gives the same proposal.
    """
    with torch.inference_mode(False), torch.enable_grad():  # test loops run in inference mode
        q = frozen_generator_with_proposal(net, init, seed)
        params = [*q.W[:-1], *q.b[:-1]]  # the class layer plays no part in q(h|x)
        if steps < 1 or not params:
            return q
        x_train, y_train = x_train.clone(), y_train.clone()  # normal tensors, even if made in inference mode
        opt = torch.optim.Adam(params, lr=lr)
        device = x_train.device
        g = torch.Generator(device=device).manual_seed(seed)
        g_cpu = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(x_train.shape[0], (min(batch_size, x_train.shape[0]),), generator=g_cpu)
            idx = idx.to(device)
            x = x_train[idx].to(q.W[0].dtype)
            x = (torch.rand(x.shape, device=device, dtype=x.dtype, generator=g) < x).to(x.dtype)
            states, log_q = sample_q(q, x, num_samples, g)
            with torch.no_grad():  # RWS's wake-q step: the normalised weights are constants
                w = torch.softmax(q.log_p_given_class(states, y_train[idx].repeat(num_samples)).view_as(log_q)
                                  - log_q, 0)
            loss = -(w * log_q).sum(0).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p in params:
        p.requires_grad_(False)
    return q
