"""Training objectives: each maps (net, x, y) to {"loss": batch mean in nats, <part>: batch mean, ...}.

`loss` is the per-example objective averaged over the batch; the other keys are its named parts, so
every part can be logged and checked on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import CoupledSigmoidNet, log_bernoulli


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
    net: CoupledSigmoidNet, x: Tensor, y: Tensor, sleep_weight: float = 1.0, generator: torch.Generator | None = None
) -> dict:
    """Helmholtz-machine style with labels, stochastic hidden states, no gradient through samples.

    wake:  -E_{h ~ q(h|x)} log p(x, h | y)     trains the generation network on recognised states
    sleep: -E_{(x~, h~) ~ p(.|y)} log q(h~, y | x~)  trains the recognition network on dreamed states
    plus the deterministic -log q(y|x), so the recognition pass is trained on real data too.
    """
    rec = F.cross_entropy(net.recognize(x), y)
    wake, sleep = _wake_sleep_terms(net, x, y, generator)
    return {"loss": rec + wake + sleep_weight * sleep, "recognition": rec, "wake": wake, "sleep": sleep}


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


OBJECTIVES: dict[str, Callable[..., dict]] = {
    "discriminative": discriminative,
    "symmetric": symmetric,
    "wake_sleep": wake_sleep,
    "hybrid": hybrid,
}
