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

from . import likelihood
from .bernoulli import bernoulli, fixed_binarize, log_bernoulli, mean_variance_logits

__all__ = ["CoupledSigmoidNet", "bernoulli", "fixed_binarize", "log_bernoulli"]

METHODS = ("deterministic", "mean_variance")
SAMPLE_KINDS = ("binary", "means")  # what an image sample shows: sampled pixels, or p(x0 = 1 | sampled x1)


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
    def up_pass(self, x: Tensor, method: str = "deterministic", first: Tensor | None = None) -> list[Tensor]:
        """[mu_1, ..., mu_(n-1), logits of q(y|x)]: approximate marginals of the recognition SBN. `first`: the
        first layer's logits W_1 x + b_1 where the caller has them (the mean-variance pass's too when x is binary:
        its variance is 0), so a step that needs them several times multiplies by W_1 once."""
        _check_method(method)
        mus, h = [], x
        for k in range(self.num_layers):
            a = first if k == 0 and first is not None else self.up_logits(k, h, method)
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

    def recognize(self, x: Tensor, method: str = "deterministic", first: Tensor | None = None) -> Tensor:
        """Class logits (B, C) of the deterministic pass on x in [0, 1] (`first`: as in :meth:`up_pass`)."""
        return self.up_pass(x, method, first)[-1]

    def generate_logits(self, y: Tensor, method: str = "deterministic") -> Tensor:
        return self.down_pass(y, method)[0]

    def generate_mean(self, y: Tensor, method: str = "deterministic") -> Tensor:
        """Pixel probabilities (B, d0) of the deterministic backward pass from class indices y."""
        return torch.sigmoid(self.generate_logits(y, method))

    # ---- ancestral sampling ----
    def sample_up(self, x: Tensor, generator: torch.Generator | None = None, layers: int | None = None) -> list[Tensor]:
        """Binary states [x0, x1, ..., onehot(y)] of the recognition SBN; grey x is read as pixel probabilities.
        `layers`: sample only that many layers above x0, [x0, .., x_layers] (default: all, the class included)."""
        h = bernoulli(x, generator)
        states = [h]
        for k in range(self.num_layers if layers is None else layers):
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

    def log_p_factors(self, states: Sequence[Tensor], y: Tensor) -> list[Tensor]:
        """[log p(x(n-1) | y), ..., log p(x0 | x1)] for states [x0, x1, ..., x(n-1)]: one factor per layer,
        top first, for objectives that weight a factor on its own."""
        h, factors = self.onehot(y), []
        for k in reversed(range(self.num_layers)):
            factors.append(log_bernoulli(states[k], self.down_logits(k, h)))
            h = states[k]
        return factors

    def log_p_given_class(self, states: Sequence[Tensor], y: Tensor) -> Tensor:
        """log p(x0, x1..x(n-1) | y) for states [x0, x1, ..., x(n-1)]."""
        return sum(self.log_p_factors(states, y))

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

        Proposal: the recognition SBN's hidden layers given x. The estimate is a stochastic lower bound that
        tightens as K grows; its gap at K = 1 measures how far q(h|x) is from p(h|x, y), i.e. how consistent
        the two networks are. How it is computed: :func:`lightning_modules.likelihood.log_likelihood`.
        """
        return likelihood.log_likelihood(self, x, y, num_samples, generator, max_chunk_elements)

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
