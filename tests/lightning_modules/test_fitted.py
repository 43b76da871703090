"""The fitted-proposal likelihood against the exact log p(x|y) of a tiny model (all hidden states enumerated)."""

import pytest
import torch

from lightning_modules.fitted import fit_proposal, frozen_generator_with_proposal

from .test_multisample import exact_log_p, tiny_net


def dataset(net, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % net.num_classes
    return net.sample_down(y, g)[0], y


def estimate(q, x, y, K, seed=0):
    return q.log_likelihood(x, y, K, generator=torch.Generator().manual_seed(seed)).mean().item()


@pytest.mark.parametrize("tied", [True, False])
def test_fitted_proposal_estimate_is_close_to_exact_and_beats_a_bad_proposal(tied):
    net = tiny_net(tied, std=1.2)
    x, y = dataset(net, 300)
    exact = torch.stack([exact_log_p(net, x[i], y[i]) for i in range(len(y))]).mean().item()
    fitted = fit_proposal(net, x, y, steps=300, batch_size=64, num_samples=10, lr=0.03, seed=0)
    # the generation half is a frozen copy: the same p, whatever the proposal
    assert all(torch.equal(fitted.V[k], net.down_weight(k)) and torch.equal(fitted.c[k], net.c[k])
               for k in range(net.num_layers))
    bad = frozen_generator_with_proposal(net, "fresh", seed=0)
    with torch.no_grad():
        for b in bad.b:
            b.fill_(-3.0)  # nearly always proposes all hidden units off
    K = 10
    fit_gap, bad_gap = exact - estimate(fitted, x, y, K), exact - estimate(bad, x, y, K)
    own_gap = exact - estimate(net, x, y, K)
    assert abs(fit_gap) < 0.1, (fit_gap, bad_gap, own_gap)  # a stochastic lower bound: noise either way
    assert fit_gap < bad_gap / 5 and fit_gap < own_gap, (fit_gap, bad_gap, own_gap)


def test_fit_proposal_is_reproducible_and_own_init_copies_the_recognition_network():
    net = tiny_net(True)
    x, y = dataset(net, 64)
    a = fit_proposal(net, x, y, steps=5, batch_size=16, seed=3)
    b = fit_proposal(net, x, y, steps=5, batch_size=16, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a.parameters(), b.parameters()))
    own = frozen_generator_with_proposal(net, "own")
    assert all(torch.equal(own.W[k], net.W[k]) and torch.equal(own.b[k], net.b[k]) for k in range(3))
    # with its own recognition network the estimate is the coupled net's own, draw for draw
    assert estimate(own, x, y, 7) == pytest.approx(estimate(net, x, y, 7), abs=1e-9)
    with pytest.raises(ValueError, match="proposal init"):
        frozen_generator_with_proposal(net, "bogus")
