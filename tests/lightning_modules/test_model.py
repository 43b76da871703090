"""The coupled pair against exact answers: tiny models are enumerated state by state."""

import itertools
import math

import pytest
import torch
from torch import nn

from lightning_modules import OBJECTIVES, CoupledSigmoidNet, fixed_binarize
from lightning_modules.bernoulli import even_softplus_sum_
from lightning_modules.likelihood import EXAMPLES_PER_DRAW, SAMPLES_PER_DRAW, block_shape


def tiny_net(sizes, tied=True, std=0.5, seed=0):
    torch.manual_seed(seed)
    net = CoupledSigmoidNet(sizes, tied=tied).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, std)
    return net


def all_states(d):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)


def log_bern(x, logits):
    return (x * logits - torch.nn.functional.softplus(logits)).sum(-1)


def exact_log_p_x_given_y(net, x, y):
    """sum over every hidden state of p(x, h | y), for one hidden layer."""
    (W1, W2), (c1, c2) = [net.down_weight(k) for k in range(2)], list(net.c)
    H = all_states(net.sizes[1])  # (S, d1)
    yo = net.onehot(y)  # (B, C)
    log_p_h = log_bern(H[None], (yo @ W2)[:, None] + c2)  # (B, S)
    log_p_x = log_bern(x[:, None], (H @ W1)[None] + c1)  # (B, S)
    return torch.logsumexp(log_p_h + log_p_x, 1)


def exact_up_marginals(net, x):
    """Exact marginals of the recognition SBN given binary x, for two hidden layers [d0, d1, d2, C]."""
    H1, H2 = all_states(net.sizes[1]), all_states(net.sizes[2])
    W, b = list(net.W), list(net.b)
    lq1 = log_bern(H1[None], (x @ W[0].T + b[0])[:, None])  # (B, S1)
    lq2 = log_bern(H2[None, None], (H1 @ W[1].T + b[1])[None, :, None])  # (1, S1, S2)
    joint = torch.exp(lq1[:, :, None] + lq2)  # (B, S1, S2)
    qy = torch.softmax(H2 @ W[2].T + b[2], -1)  # (S2, C)
    m1 = torch.einsum("bst,sd->bd", joint, H1)
    m2 = torch.einsum("bst,td->bd", joint, H2)
    my = torch.einsum("bst,tc->bc", joint, qy)
    return [m1, m2, my]


def test_parameters_have_the_documented_shapes_and_tying():
    net = CoupledSigmoidNet([7, 5, 3])
    assert [tuple(w.shape) for w in net.W] == [(5, 7), (3, 5)]
    assert [tuple(b.shape) for b in net.b] == [(5,), (3,)]
    assert [tuple(c.shape) for c in net.c] == [(7,), (5,)]
    assert net.V is None and net.down_weight(0) is net.W[0]
    untied = CoupledSigmoidNet([7, 5, 3], tied=False)
    assert all(torch.equal(v, w) and v is not w for v, w in zip(untied.V, untied.W))
    n_tied = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for p in untied.parameters()) == n_tied + 7 * 5 + 5 * 3


@pytest.mark.parametrize("sizes", [[3], [0, 3], [5, -1, 3], [5, 4, 1]])
def test_bad_sizes_are_refused(sizes):
    with pytest.raises(ValueError, match="sizes"):
        CoupledSigmoidNet(sizes)


def test_learned_prior_is_a_parameter_and_fixed_prior_is_not():
    assert "prior_logits" in dict(CoupledSigmoidNet([4, 3], learn_prior=True).named_parameters())
    assert "prior_logits" not in dict(CoupledSigmoidNet([4, 3]).named_parameters())


def test_recognize_equals_a_plain_sigmoid_mlp_with_the_same_weights():
    net = tiny_net([6, 5, 4, 3], std=1.0)
    layers = []
    for k, (w, b) in enumerate(zip(net.W, net.b)):
        lin = nn.Linear(w.shape[1], w.shape[0]).double()
        lin.weight.data.copy_(w.data)
        lin.bias.data.copy_(b.data)
        layers += [lin] + ([nn.Sigmoid()] if k < net.num_layers - 1 else [])
    x = torch.rand(8, 6, dtype=torch.float64)
    torch.testing.assert_close(net.recognize(x), nn.Sequential(*layers)(x))


def test_generate_mean_is_the_transposed_pass():
    net = tiny_net([6, 5, 3], std=1.0)
    y = torch.tensor([0, 2, 1])
    nu1 = torch.sigmoid(net.onehot(y) @ net.W[1] + net.c[1])
    torch.testing.assert_close(net.generate_mean(y), torch.sigmoid(nu1 @ net.W[0] + net.c[0]))


def test_symmetric_loss_without_hidden_layer_is_exact_pairwise_model():
    # p(x, y) ~ exp(y^T W x + b^T y + c^T x): both conditionals are exact for sizes [d0, C]
    net = tiny_net([4, 3], std=1.0)
    X = all_states(4)
    W, b, c = net.W[0], net.b[0], net.c[0]
    energy = torch.einsum("cd,xd->xc", W, X) + b[None] + (X @ c)[:, None]  # (2^d0, C)
    log_p_y_given_x = energy - torch.logsumexp(energy, 1, keepdim=True)
    log_p_x_given_y = energy - torch.logsumexp(energy, 0, keepdim=True)
    for xi, yi in [(0, 0), (5, 2), (15, 1), (9, 0)]:
        out = OBJECTIVES["symmetric"](net, X[xi : xi + 1], torch.tensor([yi]))
        torch.testing.assert_close(out["recognition"], -log_p_y_given_x[xi, yi])
        torch.testing.assert_close(out["generation"], -log_p_x_given_y[xi, yi])
        torch.testing.assert_close(out["loss"], -log_p_y_given_x[xi, yi] - log_p_x_given_y[xi, yi])
    # and log_likelihood is exact there, whatever K
    torch.testing.assert_close(
        net.log_likelihood(X, torch.full((16,), 2), num_samples=3), log_p_x_given_y[:, 2]
    )


def test_generation_weight_scales_the_generation_term():
    net = tiny_net([5, 4, 3])
    x, y = torch.rand(6, 5, dtype=torch.float64).round(), torch.tensor([0, 1, 2, 0, 1, 2])
    a = OBJECTIVES["symmetric"](net, x, y)
    b = OBJECTIVES["symmetric"](net, x, y, generation_weight=0.25)
    torch.testing.assert_close(b["loss"], a["recognition"] + 0.25 * a["generation"])


def test_log_likelihood_matches_enumeration():
    net = tiny_net([5, 4, 3])
    X = all_states(5)[::3]
    y = torch.arange(len(X)) % 3
    exact = exact_log_p_x_given_y(net, X, y)
    g = torch.Generator().manual_seed(0)
    est = net.log_likelihood(X, y, num_samples=20_000, generator=g, max_chunk_elements=2**16)
    assert (est - exact).abs().max() < 0.05, (est - exact).abs().max()
    # K = 1 is an unbiased estimate of the ELBO, E_q[log p(x, h | y) - log q(h | x)], itself below log p(x | y)
    H = all_states(net.sizes[1])
    log_q = log_bern(H[None], (X @ net.W[0].T + net.b[0])[:, None])  # (B, S)
    log_joint = log_bern(H[None], (net.onehot(y) @ net.W[1])[:, None] + net.c[1]) + log_bern(
        X[:, None], (H @ net.W[0])[None] + net.c[0])
    exact_elbo = (log_q.exp() * (log_joint - log_q)).sum(1)
    assert (exact_elbo < exact - 0.01).all()
    repeats = 1000  # separate calls: within one call, examples share uniforms (common random numbers)
    elbo = torch.stack([net.log_likelihood(X, y, num_samples=1, generator=g) for _ in range(repeats)])
    err = (elbo.mean(0) - exact_elbo).abs() / (elbo.std(0) / math.sqrt(repeats))
    assert err.max() < 5, err  # within 5 standard errors for every example


def exact_log_p_two_hidden(net, x, y):
    """log p(x | y) for [d0, d1, d2, C], enumerating every (x1, x2)."""
    H1, H2 = all_states(net.sizes[1]), all_states(net.sizes[2])
    V = [net.down_weight(k) for k in range(3)]
    log_p_h2 = log_bern(H2[None], (net.onehot(y) @ V[2])[:, None] + net.c[2])  # (B, S2)
    log_p_h1 = log_bern(H1[None], (H2 @ V[1])[:, None] + net.c[1])  # (S2, S1)
    log_p_x = log_bern(x[:, None], (H1 @ V[0])[None] + net.c[0])  # (B, S1)
    return torch.logsumexp(log_p_h2[:, :, None] + log_p_h1[None] + log_p_x[:, None, :], (1, 2))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("max_chunk_elements", [2**16, 10**9])
def test_deep_log_likelihood_matches_enumeration_in_any_chunking(tied, max_chunk_elements):
    net = tiny_net([5, 4, 4, 3], tied=tied)
    if not tied:
        with torch.no_grad():
            for v in net.V:
                v.normal_(0, 0.5)
    X, y = all_states(5)[:7], torch.tensor([0, 1, 2, 0, 1, 2, 0])
    est = net.log_likelihood(X, y, 100_000, generator=torch.Generator().manual_seed(4),
                             max_chunk_elements=max_chunk_elements)
    assert (est - exact_log_p_two_hidden(net, X, y)).abs().max() < 0.05


@pytest.mark.parametrize("d", [1, 3, 7, 12, 64, 784, 96])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_even_softplus_sum_is_softplus_minus_the_linear_half(d, dtype):
    torch.manual_seed(d)
    a = torch.cat([torch.randn(50, d) * 3, torch.randn(50, d) * 40, torch.zeros(1, d)]).to(dtype)  # deep tails too
    a64 = a.double()  # F.softplus would cut off at 20; this is softplus to the last bit
    want = (a64.clamp_min(0) + torch.log1p(torch.exp(-a64.abs())) - a64 / 2).sum(-1)
    got = even_softplus_sum_(a.clone())
    scale = a.double().abs().sum(-1) + d  # float32 sums of |a| round to a few ulps of it
    assert ((got.double() - want).abs() / scale).max() < (1e-6 if dtype == torch.float32 else 1e-13)


def test_log_likelihood_blocks_across_example_groups_and_sample_slices():
    """More examples than share one draw and more samples than one slice: log p(x|y), whatever the blocks."""
    net = tiny_net([5, 4, 4, 3])
    X = all_states(5).repeat(2, 1)[: EXAMPLES_PER_DRAW + 9]
    y = torch.arange(len(X)) % 3
    K = SAMPLES_PER_DRAW * 20 + 500

    def estimate(max_chunk_elements, num_samples=K):
        g = torch.Generator().manual_seed(5)
        return net.log_likelihood(X, y, num_samples, generator=g, max_chunk_elements=max_chunk_elements)

    assert block_shape(net, K, 2**8) == (1, 50)  # 51 rows a block: a slice of 1000 samples in 20 blocks of 50
    est = estimate(2**8)
    assert (est - exact_log_p_two_hidden(net, X, y)).abs().max() < 0.05
    # the uniforms are drawn per slice and group whatever the blocks, so the blocks change only rounding
    torch.testing.assert_close(estimate(10**9), est)
    assert block_shape(net, 40, 2**10) == (5, 40)  # blocks of several examples when K is below a block's rows
    torch.testing.assert_close(estimate(2**10, 40), estimate(10**9, 40))


def test_monte_carlo_marginals_match_enumeration():
    net = tiny_net([5, 4, 3, 3], std=1.0)
    x = all_states(5)[[1, 10, 30]]
    exact = exact_up_marginals(net, x)
    mc = net.marginals(x, "monte_carlo", num_samples=20_000, generator=torch.Generator().manual_seed(0))
    for e, m in zip(exact, mc):
        assert (e - m).abs().max() < 5 * 0.5 / math.sqrt(20_000)
    # deterministic is exact for the first hidden layer of a binary input, and only approximate above
    det = net.marginals(x, "deterministic")
    torch.testing.assert_close(det[0], exact[0])
    assert (det[1] - exact[1]).abs().max() > 1e-4


def test_sample_down_pixel_marginals_match_enumeration():
    net = tiny_net([5, 4, 3], std=1.0)
    y = torch.full((20_000,), 1)
    x0 = net.sample_down(y, generator=torch.Generator().manual_seed(0))[0].mean(0)
    H = all_states(4)
    log_p_h = log_bern(H, net.onehot(torch.tensor([1])) @ net.W[1] + net.c[1])
    exact = (torch.exp(log_p_h)[:, None] * torch.sigmoid(H @ net.W[0] + net.c[0])).sum(0)
    assert (x0 - exact).abs().max() < 5 * 0.5 / math.sqrt(20_000)


def test_samples_are_binary_and_shaped_bottom_first():
    net = tiny_net([6, 5, 4, 3])
    up = net.sample_up(torch.rand(7, 6, dtype=torch.float64))
    down = net.sample_down(torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    for states in (up, down):
        assert [s.shape[1] for s in states] == [6, 5, 4, 3]
        assert all(((s == 0) | (s == 1)).all() for s in states)
        assert (states[-1].sum(1) == 1).all()
    torch.testing.assert_close(down[-1].argmax(1), torch.tensor([0, 1, 2, 0, 1, 2, 0]))


def test_mean_variance_is_closer_to_monte_carlo_than_deterministic():
    net = tiny_net([30, 40, 40, 5], std=0.6, seed=1)
    x = (torch.rand(16, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    mc = net.marginals(x, "monte_carlo", num_samples=4000, generator=torch.Generator().manual_seed(1))
    errs = {}
    for method in ("deterministic", "mean_variance"):
        approx = net.marginals(x, method)
        errs[method] = sum((a - m).abs().mean().item() for a, m in zip(approx[:-1], mc[:-1]))
    print("hidden-layer marginal error vs Monte Carlo:", errs)
    assert errs["mean_variance"] < errs["deterministic"]


@pytest.mark.parametrize("tied", [True, False])
def test_generation_gradient_reaches_W_only_when_tied(tied):
    net = tiny_net([5, 4, 3], tied=tied)
    x, y = torch.rand(4, 5, dtype=torch.float64).round(), torch.tensor([0, 1, 2, 1])
    OBJECTIVES["symmetric"](net, x, y)["generation"].backward()
    reached = all(w.grad is not None and w.grad.abs().sum() > 0 for w in net.W)
    assert reached == tied
    if not tied:
        assert all(v.grad.abs().sum() > 0 for v in net.V)


def test_wake_sleep_sends_no_gradient_through_samples():
    net = tiny_net([5, 4, 3], tied=False)
    x, y = torch.rand(4, 5, dtype=torch.float64).round(), torch.tensor([0, 1, 2, 1])
    out = OBJECTIVES["wake_sleep"](net, x, y)
    assert set(out) == {"loss", "recognition", "wake", "sleep"}
    torch.testing.assert_close(out["loss"], out["recognition"] + out["wake"] + out["sleep"])
    out["wake"].backward(retain_graph=True)  # wake trains the generation network only
    assert all(w.grad is None for w in net.W) and all(v.grad.abs().sum() > 0 for v in net.V)
    net.zero_grad(set_to_none=True)
    out["sleep"].backward()  # sleep trains the recognition network only
    assert all(v.grad is None for v in net.V) and all(w.grad.abs().sum() > 0 for w in net.W)


def test_hybrid_is_symmetric_plus_wake_sleep_on_the_same_draws():
    net = tiny_net([5, 4, 3], tied=True)
    x, y = torch.rand(4, 5, dtype=torch.float64).round(), torch.tensor([0, 1, 2, 1])
    out = OBJECTIVES["hybrid"](net, x, y, generation_weight=0.3, sleep_weight=0.5,
                               generator=torch.Generator().manual_seed(4))
    sym = OBJECTIVES["symmetric"](net, x, y, generation_weight=0.3)
    ws = OBJECTIVES["wake_sleep"](net, x, y, sleep_weight=0.5, generator=torch.Generator().manual_seed(4))
    assert set(out) == {"loss", "recognition", "generation", "wake", "sleep"}
    for key, ref in [("recognition", sym), ("generation", sym), ("wake", ws), ("sleep", ws)]:
        torch.testing.assert_close(out[key], ref[key])
    # the recognition term counted once
    torch.testing.assert_close(out["loss"], sym["loss"] + ws["wake"] + 0.5 * ws["sleep"])
    out["loss"].backward()
    assert all(w.grad.abs().sum() > 0 for w in net.W)


def test_objectives_are_batch_means_of_per_example_losses():
    net = tiny_net([5, 4, 3])
    x, y = torch.rand(6, 5, dtype=torch.float64).round(), torch.tensor([0, 1, 2, 0, 1, 2])
    for name in ("discriminative", "symmetric"):
        whole = OBJECTIVES[name](net, x, y)["loss"]
        parts = torch.stack([OBJECTIVES[name](net, x[i : i + 1], y[i : i + 1])["loss"] for i in range(6)])
        torch.testing.assert_close(whole, parts.mean())


def test_fixed_binarize_depends_on_content_not_on_batching():
    x = torch.rand(64, 100, generator=torch.Generator().manual_seed(0))
    whole = fixed_binarize(x, seed=7)
    torch.testing.assert_close(torch.cat([fixed_binarize(x[32:], 7), fixed_binarize(x[:32], 7)]),
                               torch.cat([whole[32:], whole[:32]]))
    assert ((whole == 0) | (whole == 1)).all()
    assert not torch.equal(whole, fixed_binarize(x, seed=8))
    assert abs(whole.mean().item() - x.mean().item()) < 0.01  # an unbiased Bernoulli draw
    grey = torch.full((1, 20000), 0.3)
    assert abs(fixed_binarize(grey, 1).mean().item() - 0.3) < 0.01
