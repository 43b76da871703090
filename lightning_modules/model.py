"""The coupled sigmoid pair of Flach, Shekhovtsov & Fikar (arXiv:1709.08524).

One set of weights describes two sigmoid belief networks over layers x0 (pixels) .. xn = y (class):

    recognition q (up):   q(x_k = 1 | x_(k-1)) = sigmoid(W_k x_(k-1) + b_k),
                          q(y | x_(n-1)) = softmax(W_n x_(n-1) + b_n)
    generation  p (down): y ~ prior,  p(x_(k-1) = 1 | x_k) = sigmoid(W_k^T x_k + c_k)

Tied (the paper) the down pass reads the very same `W_k`, so both directions' gradients meet in it;
untied (the ablation) it reads separate `V_k`. Everything is in nats; batches are rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

METHODS = ("deterministic", "mean_variance")
SAMPLE_KINDS = ("binary", "means")  # what an image sample shows: sampled pixels, or p(x0 = 1 | sampled x1)
# log_likelihood's uniforms: drawn for this many samples at a time and shared by this many examples
SAMPLES_PER_DRAW = 1000
EXAMPLES_PER_DRAW = 32
# of its blocks, rows * the widest layer: cache-sized on a CPU; an accelerator wants fewer, larger kernels
MAX_CHUNK_ELEMENTS = {"cpu": 2**20, "other": 2**25}


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


class CoupledSigmoidNet(nn.Module):
    """Recognition and generation sigmoid networks sharing `W` (tied) or not (untied)."""

    def __init__(self, sizes: Sequence[int], tied: bool = True, learn_prior: bool = False):
        super().__init__()
        self.sizes = sizes = self._check_sizes(sizes)
        self.tied = tied
        pairs = list(zip(sizes[:-1], sizes[1:]))
        # Glorot scale: the same matrix serves as fan-in d_(k-1) going up and d_k going down.
        self.W = nn.ParameterList(
            [nn.Parameter(torch.randn(d_out, d_in) * math.sqrt(2.0 / (d_in + d_out))) for d_in, d_out in pairs]
        )
        self.b = nn.ParameterList([nn.Parameter(torch.zeros(d_out)) for _, d_out in pairs])
        self.c = nn.ParameterList([nn.Parameter(torch.zeros(d_in)) for d_in, _ in pairs])
        self.V = None if tied else nn.ParameterList([nn.Parameter(w.detach().clone()) for w in self.W])
        prior = torch.zeros(sizes[-1])
        if learn_prior:
            self.prior_logits = nn.Parameter(prior)
        else:
            self.register_buffer("prior_logits", prior)

    @staticmethod
    def _check_sizes(sizes: Sequence[int]) -> list[int]:
        if len(sizes) < 2 or any(int(s) != s or s < 1 for s in sizes) or sizes[-1] < 2:
            raise ValueError(
                f"sizes must be a list [d0, d1, ..., C] of at least 2 positive layer sizes ending in C >= 2 "
                f"classes, got {list(sizes)}"
            )
        return [int(s) for s in sizes]

    @property
    def num_layers(self) -> int:
        return len(self.W)

    @property
    def num_classes(self) -> int:
        return self.sizes[-1]

    def down_weight(self, k: int) -> Tensor:
        """The (d_k, d_(k-1)) matrix the generation network multiplies x_k with (as its transpose)."""
        return self.W[k] if self.V is None else self.V[k]

    # ---- one layer each way: logits of the next layer given (means or states of) this one ----
    def up_logits(self, k: int, h: Tensor, method: str = "deterministic") -> Tensor:
        if method == "mean_variance":  # grey x0 is Bernoulli too; binary x0 or one-hot y add no variance
            return mean_variance_logits(h, self.W[k], self.b[k])
        return F.linear(h, self.W[k], self.b[k])

    def down_logits(self, k: int, h: Tensor, method: str = "deterministic") -> Tensor:
        V = self.down_weight(k)
        if method == "mean_variance":
            return mean_variance_logits(h, V.t(), self.c[k])
        return F.linear(h, V.t(), self.c[k])

    def onehot(self, y: Tensor) -> Tensor:
        return F.one_hot(y.long(), self.num_classes).to(self.W[0].dtype)

    # ---- deterministic approximate inference (claim 1) ----
    def up_pass(self, x: Tensor, method: str = "deterministic") -> list[Tensor]:
        """[mu_1, ..., mu_(n-1), logits of q(y|x)]: approximate marginals of the recognition SBN."""
        _check_method(method)
        mus, h = [], x
        for k in range(self.num_layers):
            a = self.up_logits(k, h, method)
            h = torch.sigmoid(a) if k < self.num_layers - 1 else a
            mus.append(h)
        return mus

    def down_pass(self, y: Tensor, method: str = "deterministic") -> list[Tensor]:
        """[logits of p(x0|y), nu_1, ..., nu_(n-1)]: approximate marginals of the generation SBN."""
        _check_method(method)
        nus, h = [], self.onehot(y)
        for k in reversed(range(self.num_layers)):
            a = self.down_logits(k, h, method)
            h = torch.sigmoid(a) if k > 0 else a
            nus.append(h)
        return nus[::-1]

    def recognize(self, x: Tensor, method: str = "deterministic") -> Tensor:
        """Class logits (B, C) of the deterministic pass on x in [0, 1]."""
        return self.up_pass(x, method)[-1]

    def generate_logits(self, y: Tensor, method: str = "deterministic") -> Tensor:
        return self.down_pass(y, method)[0]

    def generate_mean(self, y: Tensor, method: str = "deterministic") -> Tensor:
        """Pixel probabilities (B, d0) of the deterministic backward pass from class indices y."""
        return torch.sigmoid(self.generate_logits(y, method))

    # ---- ancestral sampling ----
    def sample_up(self, x: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """Binary states [x0, x1, ..., onehot(y)] of the recognition SBN; grey x is read as pixel probabilities."""
        h = bernoulli(x, generator)
        states = [h]
        for k in range(self.num_layers):
            a = self.up_logits(k, h)
            if k < self.num_layers - 1:
                h = bernoulli(torch.sigmoid(a), generator)
            else:
                h = self.onehot(torch.multinomial(torch.softmax(a, -1), 1, generator=generator).squeeze(-1))
            states.append(h)
        return states

    def sample_down(self, y: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """Binary states [x0, x1, ..., onehot(y)] of the generation SBN for class indices y (pixels sampled too)."""
        h = self.onehot(y)
        states = [h]
        for k in reversed(range(self.num_layers)):
            h = bernoulli(torch.sigmoid(self.down_logits(k, h)), generator)
            states.append(h)
        return states[::-1]

    def sample_pixel_means(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """p(x0 = 1 | x1) for x1 from ancestral sampling (y down to x1): how SBN samples are usually shown,
        without the pixel layer's own Bernoulli noise. Same draws as :meth:`sample_down` up to x1."""
        if self.num_layers == 1:
            return self.generate_mean(y)
        return torch.sigmoid(self.down_logits(0, self.sample_down(y, generator)[1]))

    def sample_images(self, y: Tensor, kind: str = "binary", generator: torch.Generator | None = None) -> Tensor:
        """One ancestral image sample per class index in y, (B, d0): ``binary`` pixels or their ``means``."""
        if kind not in SAMPLE_KINDS:
            raise ValueError(f"sample kind must be one of {', '.join(SAMPLE_KINDS)}, got {kind!r}")
        return self.sample_down(y, generator)[0] if kind == "binary" else self.sample_pixel_means(y, generator)

    def sample_classes(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        probs = torch.softmax(self.prior_logits, -1).expand(n, -1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    # ---- exact log-probabilities of complete binary states ----
    def log_q_hidden(self, states: Sequence[Tensor]) -> Tensor:
        """log q(x1..x(n-1) | x0) for states [x0, x1, ..., x(n-1)] (the class layer is not included)."""
        total = 0
        for k in range(self.num_layers - 1):
            total = total + log_bernoulli(states[k + 1], self.up_logits(k, states[k]))
        return total

    def log_q_class(self, h_top: Tensor, y: Tensor) -> Tensor:
        return -F.cross_entropy(self.up_logits(self.num_layers - 1, h_top), y.long(), reduction="none")

    def log_p_given_class(self, states: Sequence[Tensor], y: Tensor) -> Tensor:
        """log p(x0, x1..x(n-1) | y) for states [x0, x1, ..., x(n-1)]."""
        h = self.onehot(y)
        total = 0
        for k in reversed(range(self.num_layers)):
            total = total + log_bernoulli(states[k], self.down_logits(k, h))
            h = states[k]
        return total

    def log_prior(self, y: Tensor) -> Tensor:
        return torch.log_softmax(self.prior_logits, -1)[y.long()]

    # ---- evaluation ----
    @torch.no_grad()
    def log_likelihood(
        self,
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
        pixel layer (on 2 cores 2**19 and 2**22 elements were 12% and 21% slower, 2**21 as fast:
        `scripts/ab_log_likelihood.py --blocks 19,20,21,22`). The uniforms behind the
        samples are drawn once per slice of SAMPLES_PER_DRAW samples and shared by EXAMPLES_PER_DRAW examples
        (common random numbers): each example still gets K independent samples, so its estimate is unchanged
        in distribution, while random-number generation, which costs more per number than a GEMM does per
        output, shrinks by that factor. The blocks do not change the draws, only the rounding.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        x = x.to(self.W[0].dtype)
        if self.num_layers == 1:  # no hidden layer: p(x | y) is exact
            return log_bernoulli(x, self.generate_logits(y))
        per_draw = min(num_samples, SAMPLES_PER_DRAW)
        if max_chunk_elements is None:
            max_chunk_elements = MAX_CHUNK_ELEMENTS["cpu" if x.device.type == "cpu" else "other"]
        examples_per_block, per_block = self.block_shape(num_samples, max_chunk_elements)
        params = {  # plain tensors, once per call: indexing a ParameterList costs microseconds a block
            "up": [None] + [self.W[j].t().contiguous() for j in range(1, self.num_layers - 1)],
            "down": [self.down_weight(j) for j in range(self.num_layers)], "b": list(self.b), "c": list(self.c),
        }
        out = []
        for i in range(0, x.shape[0], EXAMPLES_PER_DRAW):
            pre = self._per_example_terms(x[i : i + EXAMPLES_PER_DRAW], y[i : i + EXAMPLES_PER_DRAW], params)
            n_ex = pre["a1"].shape[0]
            log_w = torch.empty(n_ex, num_samples, dtype=x.dtype, device=x.device)
            for s0 in range(0, num_samples, per_draw):
                n = min(per_draw, num_samples - s0)
                thresholds = [  # h = 1 where logit(u) < a, i.e. u < sigmoid(a)
                    torch.rand((n, d), dtype=x.dtype, device=x.device, generator=generator).logit_()
                    for d in self.sizes[1:-1]
                ]
                for s in range(0, n, per_block):
                    t = [u[s : s + per_block] for u in thresholds]
                    for e in range(0, n_ex, examples_per_block):
                        block = slice(e, e + examples_per_block)
                        log_w[block, s0 + s : s0 + s + t[0].shape[0]] = self._log_weights(pre, block, t, params)
            out.append(torch.logsumexp(log_w, 1) - math.log(num_samples))
        return torch.cat(out)

    def block_shape(self, num_samples: int, max_chunk_elements: int = MAX_CHUNK_ELEMENTS["cpu"]) -> tuple[int, int]:
        """(examples, samples of each) in one of log_likelihood's blocks: at most max_chunk_elements // max(d)
        rows, a slice of drawn samples split evenly."""
        rows = max(1, max_chunk_elements // max(self.sizes[:-1]))
        per_draw = min(num_samples, SAMPLES_PER_DRAW)
        per_block = -(-per_draw // -(-per_draw // rows))
        return max(1, rows // per_block), per_block

    def _per_example_terms(self, x: Tensor, y: Tensor, params: dict) -> dict:
        """What log w needs of x and y alone, computed once instead of once per sample.

        log Bern(v; sigmoid(a)) = v.a - sum softplus(a). The pixel layer's log p term x.(V1^T h1 + c0) is
        h1.(V1 x) + c0.x, and log q's h1.a1 comes in with the opposite sign, so both reduce to one dot of h1
        with the per-example vector V1 x - a1 (= -b0 when tied); p(h_top|y) adds h_top.g_top. Tied, the
        bilinear terms h_(j+1)^T W_j h_j of log p (h_j.g_j) and log q (h_(j+1).a_j) cancel too, leaving
        h_j.c_j - h_(j+1).b_j. And each softplus sum's linear part, sum a/2, is a dot of the layer below with
        the matrix's column sums (see even_softplus_sum_). So every term linear in a hidden layer becomes one
        dot with a per-example vector `v[m]`, and `const` holds what depends on the example alone.
        """
        a1 = self.up_logits(0, x)
        g_top = self.down_logits(self.num_layers - 1, self.onehot(y))
        V = params["down"]
        v = [torch.zeros(x.shape[0], d, dtype=x.dtype, device=x.device) for d in self.sizes[1:-1]]
        v[0] += x @ V[0].t() - a1 - V[0].sum(1) / 2  # the pixel layer's - sum g0 / 2
        v[-1] += g_top
        const = x @ self.c[0] + F.softplus(a1).sum(-1) - F.softplus(g_top).sum(-1) - self.c[0].sum() / 2
        for j in range(1, self.num_layers - 1):  # + sum a_j / 2 - sum g_j / 2
            v[j - 1] += self.W[j].sum(0) / 2
            v[j] -= V[j].sum(1) / 2
            const = const + (self.b[j].sum() - self.c[j].sum()) / 2
            if self.tied:
                v[j - 1] += self.c[j]
                v[j] -= self.b[j]
        return {"a1": a1, "v": [u.unsqueeze(-1) for u in v], "const": const}

    def _log_weights(self, pre: dict, block: slice, thresholds: list[Tensor], params: dict) -> Tensor:
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
        for j in range(1, self.num_layers - 1):
            a = affine(h, up[j], bias_up[j])
            h_next = draw(a, thresholds[j])
            g = affine(h_next, down[j], bias_down[j])
            if not self.tied:
                log_w += rowdot(h, g.view(b, r, -1)) - rowdot(h_next, a.view(b, r, -1))
            log_w += linear_terms(h_next, j) + even_sum(a) - even_sum(g)
            h = h_next
        return log_w

    @torch.no_grad()
    def marginals(
        self,
        x: Tensor,
        method: str = "deterministic",
        num_samples: int = 1000,
        generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        """Per-layer marginals of the recognition SBN given x: [P(x1=1), ..., P(x(n-1)=1), q(y)].

        `deterministic` is the DNN pass, `mean_variance` the probit-corrected one, `monte_carlo` the
        average of `num_samples` ancestral samples (the ground truth the other two approximate).
        """
        if method == "monte_carlo":
            B, totals = x.shape[0], None
            per = max(1, min(num_samples, 2**22 // (B * max(self.sizes))))  # samples drawn in one batch
            for s in range(0, num_samples, per):
                k = min(per, num_samples - s)
                states = self.sample_up(x.repeat(k, 1), generator)[1:]
                sums = [h.view(k, B, -1).sum(0) for h in states]
                totals = sums if totals is None else [t + u for t, u in zip(totals, sums)]
            return [t / num_samples for t in totals]
        # for the categorical class layer the probit correction is a further approximation
        mus = self.up_pass(x, method)
        return mus[:-1] + [torch.softmax(mus[-1], -1)]


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown inference method {method!r}: choose one of {', '.join(METHODS)}")
