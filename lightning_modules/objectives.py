"""Training objectives: each maps (net, x, y) to {"loss": batch mean in nats, <part>: batch mean, ...}.

`loss` is the per-example objective averaged over the batch; the other keys are its named parts, so
every part can be logged and checked on its own.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError, is_int
from .model import METHODS, CoupledSigmoidNet, bernoulli, log_bernoulli, mean_variance_logits


def discriminative(net: CoupledSigmoidNet, x: Tensor, y: Tensor, method: str = "deterministic") -> dict:
    """-log q(y|x) through the deterministic pass: the baseline DNN."""
    rec = F.cross_entropy(net.recognize(x, method), y)
    return {"loss": rec, "recognition": rec}


def symmetric(
    net: CoupledSigmoidNet, x: Tensor, y: Tensor, generation_weight: float = 1.0, method: str = "deterministic"
) -> dict:
    """The paper's generative learning: -log q(y|x) - w log p(x|y), both by deterministic inference.

    p(x|y) = prod_j Bern(x_j; nu_0(y)_j) with nu_0 the backward pass from onehot(y). Tied, its gradient
    lands in the same W as the recognition term's.
    """
    rec = F.cross_entropy(net.recognize(x, method), y)
    gen = -log_bernoulli(x, net.generate_logits(y, method)).mean()
    return {"loss": rec + generation_weight * gen, "recognition": rec, "generation": gen}


def wake_sleep(
    net: CoupledSigmoidNet,
    x: Tensor,
    y: Tensor,
    sleep_weight: float = 1.0,
    generation_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict:
    """Helmholtz-machine style with labels, stochastic hidden states, no gradient through samples.

    wake:  -E_{h ~ q(h|x)} log p(x, h | y)     trains the generation network on recognised states
    sleep: -E_{(x~, h~) ~ p(.|y)} log q(h~, y | x~)  trains the recognition network on dreamed states
    plus the deterministic -log q(y|x), so the recognition pass is trained on real data too;
    generation_weight scales wake and sleep together against it.
    """
    rec = F.cross_entropy(net.recognize(x), y)
    wake, sleep = _wake_sleep_terms(net, x, y, generator)
    loss = rec + generation_weight * (wake + sleep_weight * sleep)
    return {"loss": loss, "recognition": rec, "wake": wake, "sleep": sleep}


def hybrid(
    net: CoupledSigmoidNet,
    x: Tensor,
    y: Tensor,
    generation_weight: float = 0.1,
    sleep_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict:
    """symmetric + wake-sleep: -log q(y|x) - w log p(x|y) + wake + s * sleep.

    The deterministic terms train the pair as networks (recognition, mean images); the wake and sleep
    terms train the same weights as stochastic belief networks, which is what ancestral samples and the
    importance-sampled likelihood measure, and which the deterministic terms alone leave loose.
    """
    out = symmetric(net, x, y, generation_weight)
    wake, sleep = _wake_sleep_terms(net, x, y, generator)
    return {**out, "loss": out["loss"] + wake + sleep_weight * sleep, "wake": wake, "sleep": sleep}


def _wake_sleep_terms(net: CoupledSigmoidNet, x: Tensor, y: Tensor, generator: torch.Generator | None):
    """(wake, sleep) batch means; the sampled states carry no gradient (the wake-sleep approximation)."""
    with torch.no_grad():
        up = net.sample_up(x, generator)[:-1]  # [x0, .., x(n-1)]; x0 ~ Bern(x) is x itself when x is binary
        down = net.sample_down(y, generator)[:-1]
    wake = -net.log_p_given_class(up, y).mean()
    sleep = -(net.log_q_hidden(down) + net.log_q_class(down[-1], y)).mean()
    return wake, sleep


def recognition_term(net: CoupledSigmoidNet, x: Tensor, y: Tensor, method: str, mean_variance_weight: float,
                     first: Tensor | None = None) -> Tensor:
    """-log q(y|x) through `method`'s pass, plus `mean_variance_weight` times that of the mean-variance pass: with
    the deterministic pass, the pass that is tested is trained while the mean-variance one asks the codes to keep
    the class under their sampling noise. `first`: the first layer's logits, shared (:meth:`up_pass`)."""
    def rec(m: str) -> Tensor:  # the mean-variance pass shares `first` only for binary x (its variance is 0)
        shared = m == "deterministic" or first is not None and bool(((x == 0) | (x == 1)).all())
        return F.cross_entropy(net.recognize(x, m, first if shared else None), y)

    if method == "mean_variance":  # already the mean-variance pass: run it once and scale it
        return (1.0 + mean_variance_weight) * rec(method)
    return rec(method) + mean_variance_weight * rec("mean_variance") if mean_variance_weight else rec(method)


def sample_q(
    net: CoupledSigmoidNet, x: Tensor, num_samples: int, generator: torch.Generator | None = None,
    first: Tensor | None = None,
) -> tuple[list[Tensor], Tensor]:
    """K hidden states per example from q(h|x) and their log q, with gradient: ([x0, x1, .., x(n-1)], (K, B)).

    Rows are sample-major (row s * B + i is sample s of example i), so all K samples go through one matrix
    product per layer; x0 is x itself. The logits that draw a layer also give its log q, so each layer's
    matrix product is done once. The first layer's logits are the same for the K copies of x: one product of
    B rows (`first`, where the caller has it), repeated; its weight gradient sums the copies before its product.
    The states carry no gradient.
    """
    B = x.shape[0]
    h = x.repeat(num_samples, 1)
    states, log_q = [h], x.new_zeros(h.shape[0])
    first = net.up_logits(0, x) if first is None else first
    for k in range(net.num_layers - 1):
        a = first.repeat(num_samples, 1) if k == 0 else net.up_logits(k, h)
        h = bernoulli(torch.sigmoid(a.detach()), generator)
        log_q = log_q + log_bernoulli(h, a)
        states.append(h)
    return states, log_q.view(num_samples, B)


def rws(
    net: CoupledSigmoidNet,
    x: Tensor,
    y: Tensor,
    num_samples: int = 5,
    generation_weight: float = 1.0,
    q_weight: float = 1.0,
    sleep_weight: float = 0.0,
    recognition_weight: float = 1.0,
    generative_class_weight: float = 0.0,
    top_weight: float = 1.0,
    hidden_weight: float = 1.0,
    method: str = "deterministic",
    mean_variance_weight: float = 0.0,
    sample_consistency_weight: float = 0.0,
    sample_consistency_rows: int = 0,
    sample_consistency_reader: str = "trained",
    generator: torch.Generator | None = None,
) -> dict:
    """Reweighted wake-sleep (Bornschein & Bengio 2015) with labels.

    K states h^k ~ q(h|x), normalised weights w~_k ∝ p(x, h^k | y) / q(h^k | x) (constants: no gradient
    through samples or weights). The p-term -Σ w~_k log p(x, h^k|y) is a self-normalised estimate of
    -∇ log p(x|y), so it approaches the exact gradient as K grows; the q-term -Σ w~_k log q(h^k|x) fits q
    to the posterior (wake-q); sleep is wake-sleep's dreamed -log q(h~, y|x~); plus the deterministic
    -log q(y|x). `bound` is the K-sample bound log (1/K) Σ_k w_k, logged, not trained on.

    `generative_class_weight` adds -log p(y|x) of the generator read as a classifier by Bayes' rule: log p(x|y)
    is worth at most log C nats of log p(x, y), so the likelihood alone barely asks the generator to use y.
    `top_weight` multiplies the top factor log p(x_(L-1) | y) in the p-term: tied, W_L is also the classifier's
    weights, and at a small generation_weight the recognition term alone shapes the class-conditional prior
    that every sample starts from. `hidden_weight` multiplies the factors between hidden layers,
    log p(x_(k-1) | x_k) for 1 < k < L: tied, each such W_k^T is also a recognition layer's W_k, so it asks the
    recognition codes to be predictable top-down, which is what ancestral sampling walks through. `method` is
    the pass of the recognition term (`mean_variance`: the probit-corrected one, which sees the units' noise);
    `mean_variance_weight` adds the mean-variance pass's -log q(y|x) to it (:func:`recognition_term`);
    `sample_consistency_weight`, :func:`sample_consistency` (that each step of the walk down keeps the class), on
    the first `sample_consistency_rows` labels of the batch (0: all; fewer cost less, the same term in expectation),
    its reader `trained` too or `frozen` (the generator alone answers for its samples).
    """
    y_rep, first = y.repeat(num_samples), net.up_logits(0, x)  # first: W_1 x + b_1, for q's draws and -log q(y|x)
    states, log_q = sample_q(net, x, num_samples, generator, first)
    factors = net.log_p_factors(states, y_rep)
    log_p = sum(factors).view_as(log_q)
    with torch.no_grad():
        log_w = log_p - log_q
        w = torch.softmax(log_w, 0)
        bound = (torch.logsumexp(log_w, 0) - math.log(num_samples)).mean()
    gen = -(w * log_p).sum(0).mean()
    q_term = -(w * log_q).sum(0).mean()
    rec = recognition_term(net, x, y, method, mean_variance_weight, first)
    loss = recognition_weight * rec + generation_weight * gen + q_weight * q_term
    # the reweighted factors are the p-term's own (no second generation pass), each added (weight - 1) times more
    if top_weight != 1 or hidden_weight != 1:
        extra = (top_weight - 1) * factors[0] + (hidden_weight - 1) * sum(factors[1:-1], torch.zeros_like(factors[0]))
        loss = loss - generation_weight * (w * extra.view_as(log_q)).sum(0).mean()
    out = {"recognition": rec, "generation": gen, "q": q_term, "bound": bound}
    if generative_class_weight:
        out["generative_class"] = generative_class(net, states, log_p, log_q, y)
        loss = loss + generative_class_weight * out["generative_class"]
    if sleep_weight:
        with torch.no_grad():
            down = net.sample_down(y, generator)[:-1]
        sleep = -(net.log_q_hidden(down) + net.log_q_class(down[-1], y)).mean()
        loss = loss + sleep_weight * sleep
        out["sleep"] = sleep
    if sample_consistency_weight:  # drawn last: switching it on leaves every other term's draws as they were
        out["consistency"] = sample_consistency(net, y[:sample_consistency_rows or None], generator,
                                                sample_consistency_reader)
        loss = loss + sample_consistency_weight * out["consistency"]
    return {"loss": loss, **out}


READERS = ("trained", "frozen")  # sample_consistency's reader: trained on the samples too, or not


def sample_consistency(net: CoupledSigmoidNet, y: Tensor, generator: torch.Generator | None = None,
                       reader: str = "trained") -> Tensor:
    """Mean over layers k of -log Q(y | x_(k+1)), Q the class probability of x_k ~ p(x_k | x_(k+1)), for x_(k+1)
    an ancestral state of class y: the mean-variance pass's estimate of E[q(y | x_k)] over x_k's draws.

    Given the drawn x_(k+1) (no gradient through the draw), p(x_k | x_(k+1)) is exactly factorial, so the
    mean-variance pass from its means (as Bernoulli units) reads the class of x_k's draws, with gradient to the
    layer that draws x_k and to every layer that reads it. Samples lose their class a little at each step down
    (reports/GENERATIVE.md, *Where the samples lose their class*); the likelihood does not ask them to keep it.
    `reader="frozen"` reads with the weights detached: the reading walk gets no gradient, only the layers that
    draw do, so the classifier is not fitted to read samples (tied, W still moves, through W^T in the draws).
    """
    if reader not in READERS:
        raise ValueError(f"reader must be one of {', '.join(READERS)}, got {reader!r}")
    with torch.no_grad():
        states = net.sample_down(y, generator)  # [x0, x1, .., x_(L-1), onehot(y)]
    h = states[0][:0]
    for k in range(net.num_layers):  # the walks up from x_0..x_k share layer k: one product (and one W*W) for all
        h = torch.cat([h, torch.sigmoid(net.down_logits(k, states[k + 1]))])  # + the means of x_k given the state above
        W, b = (net.W[k].detach(), net.b[k].detach()) if reader == "frozen" else (net.W[k], net.b[k])
        a = mean_variance_logits(h, W, b)  # net.up_logits(k, h, "mean_variance"), its weights maybe detached
        h = torch.sigmoid(a) if k < net.num_layers - 1 else a
    return F.cross_entropy(h, y.long().repeat(net.num_layers))  # rows: the walk from x_0, then from x_1, ...


def generative_class(net: CoupledSigmoidNet, states: list[Tensor], log_p: Tensor, log_q: Tensor, y: Tensor) -> Tensor:
    """Batch mean of -log p(y|x) = -log p(x|y) p(y) / Σ_c p(x|c) p(c), each p(x|c) by importance sampling with
    the same K states: q(h|x) does not read y and only the top factor p(x_(n-1) | y) does, so every class costs
    one (K B, C) product. As in the p-term, the gradient reaches p only (RWS's weights per class)."""
    K, B = log_q.shape
    top, C = states[-1], net.num_classes
    eye = torch.eye(C, dtype=top.dtype, device=top.device)
    A = net.down_logits(net.num_layers - 1, eye)  # (C, d): logits of p(x_(n-1) | c) for every class c
    log_top = top @ A.t() - F.softplus(A).sum(-1)  # (K B, C): log p(x_(n-1)^k | c)
    own = log_top.gather(1, y.repeat(K).long().unsqueeze(1)).squeeze(1).view(K, B)
    log_w = (log_p - own - log_q.detach()).unsqueeze(-1) + log_top.view(K, B, C)  # log p(x, h^k | c) / q(h^k|x)
    log_px = torch.logsumexp(log_w, 0) - math.log(K)  # (B, C): log p(x | c) estimated
    return F.cross_entropy(log_px + torch.log_softmax(net.prior_logits, -1), y.long())


def vimco(
    net: CoupledSigmoidNet,
    x: Tensor,
    y: Tensor,
    num_samples: int = 5,
    generation_weight: float = 1.0,
    recognition_weight: float = 1.0,
    method: str = "deterministic",
    mean_variance_weight: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict:
    """VIMCO (Mnih & Rezende 2016): maximise L_K = log (1/K) Σ_k p(x, h^k|y) / q(h^k|x), plus -log q(y|x).

    The gradient of L_K is Σ_k w~_k ∇ log w_k (the pathwise part, exact for p) plus the score-function part
    Σ_k (L_K - L_K^(-k)) ∇ log q(h^k|x), where L_K^(-k) replaces log w_k by the mean of the others (the
    leave-one-out baseline): each sample's learning signal is how much it adds to the bound. `bound` is the
    batch mean of L_K. Needs K >= 2. `method`, `mean_variance_weight`: the recognition term, as in :func:`rws`.
    """
    if num_samples < 2:
        raise ValueError(f"vimco needs num_samples >= 2 for its leave-one-out baselines, got {num_samples}")
    K, first = num_samples, net.up_logits(0, x)  # W_1 x + b_1, for q's draws and -log q(y|x)
    states, log_q = sample_q(net, x, K, generator, first)
    log_w = net.log_p_given_class(states, y.repeat(K)).view_as(log_q) - log_q
    with torch.no_grad():
        lw = log_w.detach()
        bound_per_example = torch.logsumexp(lw, 0) - math.log(K)
        w = torch.softmax(lw, 0)
        # log w_k replaced by the mean of the other K-1: L_K^(-k) for every k at once, (K, K, B)
        others = (lw.sum(0, keepdim=True) - lw) / (K - 1)
        replaced = lw.unsqueeze(0).expand(K, -1, -1).clone()
        idx = torch.arange(K, device=lw.device)
        replaced[idx, idx] = others
        signal = bound_per_example - (torch.logsumexp(replaced, 1) - math.log(K))
    surrogate = (w * log_w).sum(0) + (signal * log_q).sum(0)  # its gradient is VIMCO's estimate of ∇ L_K
    bound = bound_per_example.mean()
    gen = -(surrogate - surrogate.detach()).mean() - bound  # the value -L_K, the gradient the surrogate's
    rec = recognition_term(net, x, y, method, mean_variance_weight, first)
    return {"loss": recognition_weight * rec + generation_weight * gen, "recognition": rec,
            "generation": gen, "bound": bound}


OBJECTIVES: dict[str, Callable[..., dict]] = {
    "discriminative": discriminative,
    "symmetric": symmetric,
    "wake_sleep": wake_sleep,
    "hybrid": hybrid,
    "rws": rws,
    "vimco": vimco,
}


def generative_scale(progress: float, delay_epochs: float, ramp_epochs: float) -> float:
    """The schedule of the generative terms at `progress` (epochs, fractional): 0 for the first `delay_epochs`
    (recognition first), then linear up to 1 over `ramp_epochs` (generative terms ramped in)."""
    if progress < delay_epochs:
        return 0.0
    return 1.0 if ramp_epochs <= 0 else min(1.0, (progress - delay_epochs) / ramp_epochs)


def scale_generative(out: dict, scale: float, recognition_weight: float = 1.0) -> dict:
    """`out` with its loss's every term but ``recognition_weight * -log q(y|x)`` times `scale`. Objective-agnostic:
    each objective's loss is that recognition term plus its generative terms."""
    rec = recognition_weight * out["recognition"]
    if scale >= 1:  # the objective's own loss, bit for bit
        loss = out["loss"]
    elif scale <= 0:  # the recognition term alone (a non-finite generative term cannot leak in as 0 * inf)
        loss = rec
    else:
        loss = rec + scale * (out["loss"] - rec)
    return {**out, "loss": loss, "generative_scale": out["loss"].new_tensor(scale)}


def options_at(kwargs: dict, start_epochs: dict, epoch: int) -> dict:
    """`kwargs` with each weight of `start_epochs` at 0 before its epoch: a term switched on late in a run."""
    return {**kwargs, **{name: 0.0 for name, start in start_epochs.items() if epoch < start}}


def check_objective_kwargs(objective: str, kwargs: dict) -> None:
    """The options of `objective` (``--model.objective_kwargs``): known names, weights >= 0, a valid K and method."""
    allowed = [p for p in list(inspect.signature(OBJECTIVES[objective]).parameters)[3:] if p != "generator"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"objective {objective!r} has no option(s) {', '.join(unknown)}; "
            f"its options are: {', '.join(allowed) or 'none'}"
        )
    for name, value in kwargs.items():
        if name.endswith("_weight") and not (isinstance(value, (int, float)) and value >= 0):
            raise ConfigError(f"model.objective_kwargs.{name} must be a number >= 0, got {value!r}")
        if name == "method" and value not in METHODS:
            raise ConfigError(f"model.objective_kwargs.method must be one of {', '.join(METHODS)}, got {value!r}")
        if name == "sample_consistency_rows" and not (is_int(value) and value >= 0):
            raise ConfigError(f"model.objective_kwargs.sample_consistency_rows must be an integer >= 0 (0: the "
                              f"whole batch), got {value!r}")
        if name == "sample_consistency_reader" and value not in READERS:
            raise ConfigError(f"model.objective_kwargs.sample_consistency_reader must be one of {', '.join(READERS)}, "
                              f"got {value!r}")
        if name == "num_samples":
            least = 2 if objective == "vimco" else 1  # vimco's leave-one-out baselines
            if not (is_int(value) and value >= least):
                raise ConfigError(f"model.objective_kwargs.num_samples must be an integer >= {least}, "
                                  f"got {value!r}")
