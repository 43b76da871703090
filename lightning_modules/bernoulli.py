"""The Bernoulli arithmetic both directions of the pair and the likelihood estimator share (nats, rows = batch)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def log_bernoulli(x: Tensor, logits: Tensor) -> Tensor:
    """log Bern(x; sigmoid(logits)) summed over the last axis; x may be grey (a cross-entropy)."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


def bernoulli(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return (torch.rand(probs.shape, device=probs.device, dtype=probs.dtype, generator=generator) < probs).to(
        probs.dtype
    )


def even_softplus_sum_(a: Tensor) -> Tensor:
    """sum over the last axis of softplus(a) - a/2 = |a|/2 - log sigmoid(|a|), overwriting a.

    A layer's log-normalizer sum softplus(a) splits into a/2, linear in the layer below and so folded into
    log_likelihood's per-example dot products, and this even part. Its sigmoids lie in [1/2, 1), so a product
    of 32 of them stays above 2**-32: one log per 32 units replaces a log1p(exp) per unit, the costliest
    elementwise step of the estimate (a 32-factor product adds < 32 float ulps of relative error).
    """
    total = a.abs_().sum(-1).mul_(0.5)
    t = a.sigmoid_()
    d = t.shape[-1]
    for _ in range(5):
        if d % 2:
            break
        d //= 2
        t[..., :d].mul_(t[..., d : 2 * d])
    return total - t[..., :d].log().sum(-1)


def rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Dot products along the last axis, broadcasting the others."""
    return (a * b).sum(-1)


def mean_variance_logits(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Logits whose sigmoid approximates E[sigmoid(a)] for a = W s + bias, s ~ independent Bern(h).

    The probit trick: E[sigmoid(a)] ~ sigmoid(E[a] / sqrt(1 + pi Var[a] / 8)), Var[a] = (W*W) (h (1 - h)).
    """
    mean = F.linear(h, weight, bias)
    var = F.linear(h * (1 - h), weight * weight)
    return mean * torch.rsqrt(1 + (math.pi / 8) * var)


def fixed_binarize(x: Tensor, seed: int = 0) -> Tensor:
    """Binarize grey images with a draw that depends only on (image content, pixel, seed).

    The test set must be binarized "once, with a fixed seed" no matter how it is batched or sharded
    across ranks, so the uniform for pixel j of image i is a hash of (content of i, j, seed), not a
    draw from a stream whose position depends on the batch order.
    """
    mask = 0xFFFFFFFF

    def mix(h: Tensor) -> Tensor:  # lowbias32 (Wellons): good avalanche, int64 arithmetic wraps fine
        h = h & mask
        h = h ^ (h >> 16)
        h = (h * 0x7FEB352D) & mask
        h = h ^ (h >> 15)
        h = (h * 0x846CA68B) & mask
        return h ^ (h >> 16)

    q = (x.detach().clamp(0, 1) * 255).round().to(torch.int64)
    pos = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=torch.int64)
    key = mix((q * mix(pos * 0x9E3779B1 + seed)).sum(-1, keepdim=True) + seed)  # one key per image
    u = (mix(key ^ mix(pos + 0x632BE5AB * (seed + 1))).to(torch.float64) + 0.5) / 2.0**32
    return (u < x.to(torch.float64)).to(x.dtype)
