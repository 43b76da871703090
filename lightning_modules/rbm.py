"""DBN-style greedy layer-wise RBM pretraining of the pair's weights (Hinton, Osindero & Teh 2006).

Two adjacent layers u = x_(k-1), v = x_k with the tied W_k form a restricted Boltzmann machine

    E(u, v) = -v^T W_k u - b_k^T v - c_k^T u,

whose two conditionals are exactly the pair's: q(x_k | x_(k-1)) = sigmoid(W_k u + b_k) going up and
p(x_(k-1) | x_k) = sigmoid(W_k^T v + c_k) going down (METHOD.md, "Why transposition"). Pretraining fits the
hidden layers bottom-up by contrastive divergence, each RBM on the states the layers below recognise; this is
how tied recognition/generation weights were first learned. The class layer is left to the training objective.
An untied pair starts its generation weights V as copies of the pretrained W (the DBN's untying).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import CoupledSigmoidNet, bernoulli


def free_energy(net: CoupledSigmoidNet, k: int, u: Tensor) -> Tensor:
    """F(u) = -c_k^T u - Σ_j softplus(W_k u + b_k)_j of layer k's RBM, so that p(u) ∝ exp(-F(u)); shape (B,)."""
    return -(u @ net.c[k]) - F.softplus(net.up_logits(k, u)).sum(-1)


def gibbs_chain(
    net: CoupledSigmoidNet, k: int, u: Tensor, steps: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(u, p(u = 1 | v)) after `steps` block-Gibbs sweeps v ~ q(v|u), u ~ p(u|v) of layer k's RBM (no gradient).
    The down step reads W_k^T even when the pair is untied: it is the RBM's, not the generation network's."""
    with torch.no_grad():
        probs = u
        for _ in range(steps):
            v = bernoulli(torch.sigmoid(net.up_logits(k, u)), generator)
            probs = torch.sigmoid(F.linear(v, net.W[k].t(), net.c[k]))
            u = bernoulli(probs, generator)
    return u, probs


def cd_loss(
    net: CoupledSigmoidNet, k: int, u: Tensor, steps: int = 1, generator: torch.Generator | None = None
) -> dict:
    """CD-`steps` on visible states u (B, d_(k-1)) of layer k's RBM: ``loss`` = mean F(u) - mean F(u~), u~ the
    chains started at u. Its gradient is the CD estimate of -∇ mean log p(u): the data term exact, the model's
    expectation from the chains (constants: no gradient through them), the hidden units summed out.
    ``reconstruction``: squared error of the last sweep's p(u|v) against u, per example, for monitoring."""
    u_model, probs = gibbs_chain(net, k, u, steps, generator)
    loss = free_energy(net, k, u).mean() - free_energy(net, k, u_model).mean()
    return {"loss": loss, "reconstruction": ((u - probs) ** 2).sum(-1).mean()}


def pretrain_rbms(
    net: CoupledSigmoidNet,
    x_train: Tensor,
    epochs: int,
    cd_steps: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> list[dict] | None:
    """Fits W_k, b_k, c_k of every hidden layer k (not the class layer), bottom-up, by `epochs` epochs of CD each
    (Adam at `lr`, shuffled batches of the grey training images x_train in [0, 1], binarized afresh), in place.

    Everything is drawn from generators seeded by `seed`: the same call gives the same weights. Returns one
    record per layer: its sizes and the mean reconstruction error of its first and last epoch; or None, with the
    weights part-trained, as soon as `should_stop()` (asked before every batch) says so.
    """
    records = []
    device = x_train.device
    g = torch.Generator(device=device).manual_seed(seed)
    g_cpu = torch.Generator().manual_seed(seed)
    with torch.inference_mode(False), torch.enable_grad():
        x_train = x_train.clone()  # a normal tensor, even if made in inference mode
        for k in range(net.num_layers - 1):
            opt = torch.optim.Adam([net.W[k], net.b[k], net.c[k]], lr=lr)
            errors = []
            for _ in range(epochs):
                total, n = x_train.new_zeros(()), 0  # summed on the device: no host sync per step
                for idx in torch.randperm(x_train.shape[0], generator=g_cpu).split(batch_size):
                    if should_stop is not None and should_stop():
                        return None
                    x = x_train[idx.to(device)].to(net.W[k].dtype)
                    with torch.no_grad():  # x_k as the layers below recognise it, x0 ~ Bern(x) binarized afresh
                        u = net.sample_up(x, g, layers=k)[-1]
                    out = cd_loss(net, k, u, cd_steps, g)
                    opt.zero_grad(set_to_none=True)
                    out["loss"].backward()
                    opt.step()
                    total, n = total + out["reconstruction"].detach() * len(idx), n + len(idx)
                errors.append(float(total) / n)
            records.append({"layer": k + 1, "sizes": tuple(net.W[k].shape[::-1]), "reconstruction": errors})
        if net.V is not None:
            with torch.no_grad():
                for k in range(net.num_layers - 1):
                    net.V[k].copy_(net.W[k])
    return records
