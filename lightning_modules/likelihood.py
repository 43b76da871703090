"""The importance-sampled test log-likelihood log p(x | y) of a coupled pair, the number every report compares.

The proposal is the pair's recognition SBN (or any net with the same layer sizes: ``fitted.py``'s proposal). The
work is arranged so that memory stays bounded whatever B and K are and so that the dominant costs are GEMMs;
each trick has its one-line reason where it is. Measured block sizes: reports/BENCH_NOTES.md ("log-likelihood
blocks").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .bernoulli import even_softplus_sum_, log_bernoulli, rowdot

# log_likelihood's uniforms: drawn for this many samples at a time and shared by this many examples
SAMPLES_PER_DRAW = 1000
EXAMPLES_PER_DRAW = 32
# of its blocks, rows * the widest layer: cache-sized on a CPU; an accelerator wants fewer, larger kernels
MAX_CHUNK_ELEMENTS = {"cpu": 2**20, "other": 2**25}


def log_likelihood(
    net,
    x: Tensor,
    y: Tensor,
    num_samples: int = 1000,
    generator: torch.Generator | None = None,
    max_chunk_elements: int | None = None,
) -> Tensor:
    """Importance-sampling estimate of log p(x | y) in nats, shape (B,); K = 1 is the ELBO.

    Proposal: the recognition SBN's hidden layers given x. The estimate is a stochastic lower bound
    that tightens as K grows; its gap at K = 1 measures how far q(h|x) is from p(h|x, y), i.e. how
    consistent the two networks are.

    Work goes in blocks of (example, sample) rows, at most max_chunk_elements // max(d) of them (default:
    MAX_CHUNK_ELEMENTS for the device), so memory is bounded whatever B and K are. On a CPU the buffers a
    block passes between its matrix products stay near the L2 cache: 1,000 rows for MNIST, 3 MB in the
    pixel layer (measured: reports/BENCH_NOTES.md, "Numbers that were in docstrings"). The uniforms behind the
    samples are drawn once per slice of SAMPLES_PER_DRAW samples and shared by EXAMPLES_PER_DRAW examples
    (common random numbers): each example still gets K independent samples, so its estimate is unchanged
    in distribution, while random-number generation, which costs more per number than a GEMM does per
    output, shrinks by that factor. The blocks do not change the draws, only the rounding.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    x = x.to(net.W[0].dtype)
    if net.num_layers == 1:  # no hidden layer: p(x | y) is exact
        return log_bernoulli(x, net.generate_logits(y))
    per_draw = min(num_samples, SAMPLES_PER_DRAW)
    if max_chunk_elements is None:
        max_chunk_elements = MAX_CHUNK_ELEMENTS["cpu" if x.device.type == "cpu" else "other"]
    examples_per_block, per_block = block_shape(net, num_samples, max_chunk_elements)
    params = {  # plain tensors, once per call: indexing a ParameterList costs microseconds a block
        "up": [None] + [net.W[j].t().contiguous() for j in range(1, net.num_layers - 1)],
        "down": [net.down_weight(j) for j in range(net.num_layers)], "b": list(net.b), "c": list(net.c),
    }
    out = []
    for i in range(0, x.shape[0], EXAMPLES_PER_DRAW):
        pre = _per_example_terms(net, x[i : i + EXAMPLES_PER_DRAW], y[i : i + EXAMPLES_PER_DRAW], params)
        n_ex = pre["a1"].shape[0]
        log_w = torch.empty(n_ex, num_samples, dtype=x.dtype, device=x.device)
        for s0 in range(0, num_samples, per_draw):
            n = min(per_draw, num_samples - s0)
            thresholds = [  # h = 1 where logit(u) < a, i.e. u < sigmoid(a)
                torch.rand((n, d), dtype=x.dtype, device=x.device, generator=generator).logit_()
                for d in net.sizes[1:-1]
            ]
            for s in range(0, n, per_block):
                t = [u[s : s + per_block] for u in thresholds]
                for e in range(0, n_ex, examples_per_block):
                    block = slice(e, e + examples_per_block)
                    log_w[block, s0 + s : s0 + s + t[0].shape[0]] = _log_weights(net, pre, block, t, params)
        out.append(torch.logsumexp(log_w, 1) - math.log(num_samples))
    return torch.cat(out)


def block_shape(net, num_samples: int, max_chunk_elements: int = MAX_CHUNK_ELEMENTS["cpu"]) -> tuple[int, int]:
    """(examples, samples of each) in one of log_likelihood's blocks: at most max_chunk_elements // max(d)
    rows, a slice of drawn samples split evenly."""
    rows = max(1, max_chunk_elements // max(net.sizes[:-1]))
    per_draw = min(num_samples, SAMPLES_PER_DRAW)
    per_block = -(-per_draw // -(-per_draw // rows))
    return max(1, rows // per_block), per_block


def _per_example_terms(net, x: Tensor, y: Tensor, params: dict) -> dict:
    """What log w needs of x and y alone, computed once instead of once per sample.

    log Bern(v; sigmoid(a)) = v.a - sum softplus(a). The pixel layer's log p term x.(V1^T h1 + c0) is
    h1.(V1 x) + c0.x, and log q's h1.a1 comes in with the opposite sign, so both reduce to one dot of h1
    with the per-example vector V1 x - a1 (= -b0 when tied); p(h_top|y) adds h_top.g_top. Tied, the
    bilinear terms h_(j+1)^T W_j h_j of log p (h_j.g_j) and log q (h_(j+1).a_j) cancel too, leaving
    h_j.c_j - h_(j+1).b_j. And each softplus sum's linear part, sum a/2, is a dot of the layer below with
    the matrix's column sums (see even_softplus_sum_). So every term linear in a hidden layer becomes one
    dot with a per-example vector `v[m]`, and `const` holds what depends on the example alone.
    """
    a1 = net.up_logits(0, x)
    g_top = net.down_logits(net.num_layers - 1, net.onehot(y))
    V = params["down"]
    v = [torch.zeros(x.shape[0], d, dtype=x.dtype, device=x.device) for d in net.sizes[1:-1]]
    v[0] += x @ V[0].t() - a1 - V[0].sum(1) / 2  # the pixel layer's - sum g0 / 2
    v[-1] += g_top
    const = x @ net.c[0] + F.softplus(a1).sum(-1) - F.softplus(g_top).sum(-1) - net.c[0].sum() / 2
    for j in range(1, net.num_layers - 1):  # + sum a_j / 2 - sum g_j / 2
        v[j - 1] += net.W[j].sum(0) / 2
        v[j] -= V[j].sum(1) / 2
        const = const + (net.b[j].sum() - net.c[j].sum()) / 2
        if net.tied:
            v[j - 1] += net.c[j]
            v[j] -= net.b[j]
    return {"a1": a1, "v": [u.unsqueeze(-1) for u in v], "const": const}


def _log_weights(net, pre: dict, block: slice, thresholds: list[Tensor], params: dict) -> Tensor:
    """log p(x, h | y) - log q(h | x) for the block's examples, one sample per row of the (r, d_m)
    `thresholds` (logits of shared uniforms): (b, r)."""
    a1 = pre["a1"][block]
    b, r = a1.shape[0], thresholds[0].shape[0]
    up, down, bias_up, bias_down = params["up"], params["down"], params["b"], params["c"]

    def draw(logits: Tensor, t: Tensor) -> Tensor:  # (b, r, d) binary states with P(1) = sigmoid(logits)
        # compare straight into a float buffer: a bool result's conversion is a slow extra pass on CPU
        out = torch.empty((b, r, t.shape[-1]), device=t.device, dtype=t.dtype)
        return torch.lt(t, logits.view(b, -1, t.shape[-1]), out=out)

    def linear_terms(h: Tensor, m: int) -> Tensor:  # h_m . v_m per row, one batched matrix-vector product
        return torch.bmm(h, pre["v"][m][block]).view(b, r)

    def affine(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        # a plain GEMM, then the bias in place: addmm (F.linear) first copies the broadcast bias into the
        # output and makes the GEMM read it back
        return torch.mm(h.view(b * r, -1), weight).add_(bias)

    def even_sum(a: Tensor) -> Tensor:  # a is spent
        return even_softplus_sum_(a).view(b, r)

    h = draw(a1, thresholds[0])
    log_w = linear_terms(h, 0) + pre["const"][block, None]
    log_w -= even_sum(affine(h, down[0], bias_down[0]))
    for j in range(1, net.num_layers - 1):
        a = affine(h, up[j], bias_up[j])
        h_next = draw(a, thresholds[j])
        g = affine(h_next, down[j], bias_down[j])
        if not net.tied:
            log_w += rowdot(h, g.view(b, r, -1)) - rowdot(h_next, a.view(b, r, -1))
        log_w += linear_terms(h_next, j) + even_sum(a) - even_sum(g)
        h = h_next
    return log_w
