"""The multi-sample objectives (rws, vimco) against exact answers: every hidden state of a tiny model enumerated."""

import itertools
import math

import pytest
import torch

from lightning_modules import OBJECTIVES, CoupledSigmoidNet
from lightning_modules.objectives import generative_class, sample_q

from .test_model import tiny_net as _tiny_net

SIZES = [5, 4, 3, 3]  # 7 hidden units: 128 joint hidden states, 128**2 pairs


def tiny_net(tied, seed=0, std=0.8):
    return _tiny_net(SIZES, tied=tied, std=std, seed=seed)


def hidden_states(net):
    """Every joint hidden state as per-layer tensors [(S, d1), (S, d2), ...], S = 2**(d1 + d2 + ...)."""
    dims = net.sizes[1:-1]
    bits = torch.tensor(list(itertools.product([0.0, 1.0], repeat=sum(dims))), dtype=torch.float64)
    return list(torch.split(bits, dims, dim=1))


def exact_terms(net, x, y):
    """(log p(x, h | y), log q(h | x)) for one example x (d0,) and every hidden state h: two (S,) tensors."""
    H = hidden_states(net)
    S = H[0].shape[0]
    states = [x.expand(S, -1), *H]
    yy = y.expand(S)
    return net.log_p_given_class(states, yy), net.log_q_hidden(states)


def exact_log_p(net, x, y):
    return torch.logsumexp(exact_terms(net, x, y)[0], 0)


def exact_expected_bound(net, x, y, K):
    """E_{h^1..h^K ~ q} [log (1/K) Σ_k p(x, h^k|y) / q(h^k|x)], summing over all S**K tuples."""
    log_p, log_q = exact_terms(net, x, y)
    lw, S = log_p - log_q, log_p.shape[0]
    grids = torch.meshgrid(*[torch.arange(S)] * K, indexing="ij")
    tuples_lw = torch.stack([lw[g] for g in grids], -1)
    tuples_lq = sum(log_q[g] for g in grids)
    return (tuples_lq.exp() * (torch.logsumexp(tuples_lw, -1) - math.log(K))).sum()


def data(net, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % net.num_classes
    return net.sample_down(y, g)[0], y


def flat_grad(net, loss):
    net.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype)
                      for p in net.parameters()])


@pytest.mark.parametrize("tied", [True, False])
def test_rws_p_gradient_approaches_the_exact_gradient_of_log_p_as_K_grows(tied):
    net = tiny_net(tied, std=0.5)
    x, y = data(net)
    exact = flat_grad(net, -torch.stack([exact_log_p(net, x[i], y[i]) for i in range(len(y))]).mean())
    errors = {}
    for K in (10, 1000, 100000):
        g = torch.Generator().manual_seed(0)
        out = OBJECTIVES["rws"](net, x, y, num_samples=K, q_weight=0.0, recognition_weight=0.0, generator=g)
        errors[K] = ((flat_grad(net, out["loss"]) - exact).norm() / exact.norm()).item()
    # the self-normalised estimate has O(1/K) bias and O(1/sqrt(K)) noise: about 100%, 10% and 1% here
    assert errors[100000] < 0.03 and errors[100000] < errors[1000] < errors[10], errors


@pytest.mark.parametrize("tied", [True, False])
def test_vimco_gradient_is_unbiased_for_the_exact_gradient_of_the_expected_bound_at_K2(tied):
    net = tiny_net(tied)
    x, y = data(net, n=1)
    exact = flat_grad(net, -exact_expected_bound(net, x[0], y[0], 2))
    # 20 independent means of 5,000 draws each: their spread gives the standard error of the overall mean
    draws = 5000
    grads = []
    for r in range(20):
        g = torch.Generator().manual_seed(100 + r)
        out = OBJECTIVES["vimco"](net, x.expand(draws, -1), y.expand(draws), num_samples=2,
                                  recognition_weight=0.0, generator=g)
        grads.append(flat_grad(net, out["loss"]))
    grads = torch.stack(grads)
    mean, se = grads.mean(0), grads.std(0) / math.sqrt(len(grads))
    used = exact.abs() > 0  # the class layer's weights are not in the bound
    assert torch.all((mean - exact)[used].abs() < 5 * se[used] + 1e-9), (mean - exact)[used] / se[used]
    assert ((mean - exact).norm() / exact.norm()).item() < 0.05
    assert torch.all(mean[~used] == 0)


def test_vimco_gradient_is_not_the_pathwise_part_alone():
    """The score-function part matters: without it the q-gradient would be far from the exact one."""
    net = tiny_net(False)
    x, y = data(net, n=1)
    exact = flat_grad(net, -exact_expected_bound(net, x[0], y[0], 2))
    g = torch.Generator().manual_seed(0)
    states, log_q = sample_q(net, x.expand(50000, -1), 2, g)
    log_w = net.log_p_given_class(states, y.expand(50000).repeat(2)).view_as(log_q) - log_q
    pathwise = flat_grad(net, -(torch.softmax(log_w.detach(), 0) * log_w).sum(0).mean())
    assert ((pathwise - exact).norm() / exact.norm()).item() > 0.2


@pytest.mark.parametrize("tied", [True, False])
def test_expected_bound_increases_with_K_and_stays_below_log_p(tied):
    net = tiny_net(tied)
    x, y = data(net, n=2)
    for i in range(2):
        bounds = [exact_expected_bound(net, x[i], y[i], K).item() for K in (1, 2, 3)]
        log_p = exact_log_p(net, x[i], y[i]).item()
        assert bounds[0] < bounds[1] < bounds[2] <= log_p, (bounds, log_p)
        # K = 1 is the ELBO: E_q[log p(x, h|y) - log q(h|x)]
        log_p_all, log_q = exact_terms(net, x[i], y[i])
        assert bounds[0] == pytest.approx((log_q.exp() * (log_p_all - log_q)).sum().item(), abs=1e-10)


@pytest.mark.parametrize("name", ["rws", "vimco"])
def test_logged_bound_is_an_unbiased_estimate_of_the_expected_bound(name):
    net = tiny_net(True)
    x, y = data(net, n=1)
    exact = exact_expected_bound(net, x[0], y[0], 2).item()
    g = torch.Generator().manual_seed(0)
    n = 100000
    with torch.no_grad():
        out = OBJECTIVES[name](net, x.expand(n, -1), y.expand(n), num_samples=2, generator=g)
    # per-example L_2 has a spread of well under 3 nats on this model: 5 standard errors < 0.05
    assert out["bound"].item() == pytest.approx(exact, abs=0.05)


def test_vimco_generation_part_reads_minus_the_bound():
    net = tiny_net(True)
    x, y = data(net)
    out = OBJECTIVES["vimco"](net, x, y, num_samples=4, generator=torch.Generator().manual_seed(0))
    assert out["generation"].item() == pytest.approx(-out["bound"].item(), abs=1e-12)
    assert out["loss"].item() == pytest.approx(out["recognition"].item() + out["generation"].item(), abs=1e-12)


def test_sample_q_log_q_matches_the_model_and_rows_are_sample_major():
    net = tiny_net(False)
    x, _ = data(net, n=3)
    states, log_q = sample_q(net, x, 4, torch.Generator().manual_seed(0))
    assert log_q.shape == (4, 3)
    assert torch.equal(states[0].view(4, 3, -1)[2], x)
    assert torch.allclose(log_q.flatten(), net.log_q_hidden(states))
    assert all(set(h.unique().tolist()) <= {0.0, 1.0} for h in states[1:])


def test_rws_batches_K_through_one_matrix_product_per_layer(monkeypatch):
    """All K samples of the batch go through one F.linear per layer, not K of them."""
    net = tiny_net(True)
    x, y = data(net)
    calls = []
    original = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda *a, **k: calls.append(a[0].shape) or original(*a, **k))
    OBJECTIVES["rws"](net, x, y, num_samples=7, generator=torch.Generator().manual_seed(0))
    big = [s for s in calls if s[0] == 7 * len(y)]
    # up: the first hidden layer's logits once for the images (the K copies share them), the second drawn on all
    # K B rows; down: p(h2|y), p(h1|h2), p(x|h1) (the first on the repeated labels)
    assert calls[0] == x.shape and len(big) == 4 and len(calls) < 10, calls


@pytest.mark.parametrize("grey", [False, True])
def test_rws_multiplies_the_images_by_w1_once(monkeypatch, grey):
    """The first layer's logits W_1 x + b_1 serve q's K draws and both recognition passes: binary images go
    through W_1 once; grey ones add the mean-variance pass's own two products (its variance is not 0 then)."""
    from lightning_modules.objectives import recognition_term

    net = tiny_net(True)
    x, y = data(net)
    x = 0.5 * x + 0.25 if grey else x
    calls = []
    original = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda *a, **k: calls.append(a[0].shape) or original(*a, **k))
    OBJECTIVES["rws"](net, x, y, num_samples=3, mean_variance_weight=1.0, generator=torch.Generator().manual_seed(0))
    assert calls.count(x.shape) == (3 if grey else 1), calls
    monkeypatch.undo()
    shared = recognition_term(net, x, y, "deterministic", 1.0, net.up_logits(0, x))
    own = recognition_term(net, x, y, "deterministic", 1.0)
    assert torch.equal(shared, own)
    grads = [torch.autograd.grad(r, net.W[0])[0] for r in (shared, own)]
    assert torch.allclose(*grads, rtol=1e-10, atol=1e-12)


def test_sample_q_is_the_draw_of_k_copies_of_the_batch():
    """The first layer's logits computed once and repeated: the same states and log q as running the K copies
    of x through every layer, and the same gradient up to rounding."""
    from lightning_modules.model import bernoulli, log_bernoulli

    net = tiny_net(False)
    x, _ = data(net, n=5)
    states, log_q = sample_q(net, x, 3, torch.Generator().manual_seed(1))
    g, h = torch.Generator().manual_seed(1), x.repeat(3, 1)
    copies, log_q_copies = [h], x.new_zeros(h.shape[0])
    for k in range(net.num_layers - 1):
        a = net.up_logits(k, h)
        h = bernoulli(torch.sigmoid(a.detach()), g)
        log_q_copies = log_q_copies + log_bernoulli(h, a)
        copies.append(h)
    assert all(torch.equal(a, b) for a, b in zip(states, copies))
    assert torch.allclose(log_q.flatten(), log_q_copies, rtol=0, atol=1e-12)
    grad = torch.autograd.grad(log_q.sum(), net.W[0])[0]
    assert torch.allclose(grad, torch.autograd.grad(log_q_copies.sum(), net.W[0])[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,kwargs", [("rws", {"sleep_weight": 1.0}), ("vimco", {})])
def test_multisample_objectives_train_a_tiny_model(name, kwargs):
    """A few hundred Adam steps on data from a fixed model raise the bound."""
    torch.manual_seed(0)
    teacher = tiny_net(True, seed=3, std=1.5)
    x, y = data(teacher, n=256)
    net = CoupledSigmoidNet(SIZES).double()
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(300):
        out = OBJECTIVES[name](net, x, y, num_samples=5, generator=g, **kwargs)
        first = out["bound"].item() if first is None else first
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["bound"].item() > first + 0.5


def exact_log_posterior(net, x, y):
    """log p(y|x) of the generator by Bayes' rule, every hidden state and class enumerated."""
    log_px = torch.stack([exact_log_p(net, x, torch.tensor(c)) for c in range(net.num_classes)])
    joint = log_px + torch.log_softmax(net.prior_logits, -1)
    return joint[y] - torch.logsumexp(joint, 0)


@pytest.mark.parametrize("tied", [True, False])
def test_generative_class_term_over_every_hidden_state_is_the_exact_posterior_and_its_gradient(tied):
    """With all S hidden states as the "samples" and log q = 0, the estimate's sum over states is exact:
    value and gradient of -log p(y|x) match enumeration (the -log K it subtracts cancels across classes)."""
    net = tiny_net(tied, std=1.0)
    x, y = data(net)
    target = -torch.stack([exact_log_posterior(net, x[i], y[i]) for i in range(len(y))]).mean()
    exact = flat_grad(net, target)
    H, B = hidden_states(net), len(y)
    S = H[0].shape[0]
    states = [x.repeat(S, 1)] + [h.repeat_interleave(B, 0) for h in H]  # sample-major rows
    log_p = net.log_p_given_class(states, y.repeat(S)).view(S, B)
    value = generative_class(net, states, log_p, torch.zeros_like(log_p), y)
    assert value.item() == pytest.approx(target.item(), abs=1e-10)
    assert torch.allclose(flat_grad(net, value), exact, atol=1e-12)
    assert target.item() > 0.05 and exact.norm() > 0  # the classes are not trivially apart


@pytest.mark.parametrize("tied", [True, False])
def test_rws_generative_class_term_approaches_the_exact_generative_posterior_as_K_grows(tied):
    net = tiny_net(tied, std=1.0)
    x, y = data(net)
    target = -torch.stack([exact_log_posterior(net, x[i], y[i]) for i in range(len(y))]).mean()
    exact = flat_grad(net, target)
    values, errors = {}, {}
    for K in (10, 1000, 100000):
        g = torch.Generator().manual_seed(0)
        out = OBJECTIVES["rws"](net, x, y, num_samples=K, generation_weight=0.0, q_weight=0.0,
                                recognition_weight=0.0, generative_class_weight=1.0, generator=g)
        values[K] = out["generative_class"].item()
        errors[K] = ((flat_grad(net, out["loss"]) - exact).norm() / exact.norm()).item()
    # a ratio of self-normalised estimates: O(1/K) bias, O(1/sqrt(K)) noise. The exact gradient is a small
    # difference of per-class gradients, so its relative error falls from several times its size to ~50%.
    assert values[100000] == pytest.approx(target.item(), abs=0.03), (values, target.item())
    assert errors[100000] < 0.8 and errors[100000] < errors[1000] < errors[10], errors


def test_rws_generative_class_term_is_off_by_default_and_adds_its_weight():
    net = tiny_net(True)
    x, y = data(net)
    kw = dict(num_samples=3, generation_weight=0.5, q_weight=0.5)
    plain = OBJECTIVES["rws"](net, x, y, generator=torch.Generator().manual_seed(0), **kw)
    both = OBJECTIVES["rws"](net, x, y, generator=torch.Generator().manual_seed(0), generative_class_weight=0.25, **kw)
    assert "generative_class" not in plain
    assert both["bound"].item() == plain["bound"].item()  # the same draws
    assert both["loss"].item() == pytest.approx(plain["loss"].item() + 0.25 * both["generative_class"].item(),
                                                abs=1e-12)


def test_rws_top_weight_scales_the_gradient_of_the_top_factor_only():
    """Untied, with only the p-term on: the top factor log p(x2 | y) is the only term that reads V[2] and c[2],
    so top_weight t scales their gradient by t and leaves every other layer's as it was."""
    net = tiny_net(False)
    x, y = data(net)
    grads = {}
    for t in (1.0, 3.0):
        out = OBJECTIVES["rws"](net, x, y, num_samples=4, q_weight=0.0, recognition_weight=0.0, top_weight=t,
                                generator=torch.Generator().manual_seed(0))
        net.zero_grad()
        out["loss"].backward()
        grads[t] = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    top = {"V.2", "c.2"}
    assert top <= set(grads[1.0]) and grads[1.0]["V.2"].abs().sum() > 0
    for name in grads[1.0]:
        expected = 3.0 * grads[1.0][name] if name in top else grads[1.0][name]
        assert torch.allclose(grads[3.0][name], expected, atol=1e-12), name


def test_rws_top_weight_reuses_the_top_factor_of_the_p_term(monkeypatch):
    """top_weight reweights the factor the p-term already computed: one generation pass per layer, not a second
    top-layer product, and the loss is the same as adding (t - 1) times the top factor by hand."""
    net = tiny_net(True)
    x, y = data(net)
    calls = []
    down_logits = net.down_logits
    monkeypatch.setattr(net, "down_logits", lambda k, h: calls.append(k) or down_logits(k, h))
    kw = dict(num_samples=4, q_weight=0.0, recognition_weight=0.0, generation_weight=0.5)
    out = OBJECTIVES["rws"](net, x, y, top_weight=3.0, generator=torch.Generator().manual_seed(0), **kw)
    assert sorted(calls) == list(range(net.num_layers))
    monkeypatch.undo()
    plain = OBJECTIVES["rws"](net, x, y, generator=torch.Generator().manual_seed(0), **kw)
    states, log_q = sample_q(net, x, 4, torch.Generator().manual_seed(0))
    top = net.log_p_factors(states, y.repeat(4))[0].view_as(log_q)
    w = torch.softmax(net.log_p_given_class(states, y.repeat(4)).view_as(log_q) - log_q, 0)
    assert out["loss"].item() == pytest.approx(plain["loss"].item() - 0.5 * 2.0 * (w * top).sum(0).mean().item(),
                                               abs=1e-12)


def test_rws_hidden_weight_scales_the_gradient_of_the_factors_between_hidden_layers_only():
    """Untied, with only the p-term on: log p(x1 | x2) is the one factor between hidden layers of [5, 4, 3, 3]
    and the only term that reads V[1] and c[1], so hidden_weight t scales their gradient by t, the top factor's
    and the pixels' stay as they were, and top_weight still acts on the top factor alone."""
    net = tiny_net(False)
    x, y = data(net)
    grads = {}
    for t, top in ((1.0, 1.0), (3.0, 1.0), (3.0, 2.0)):
        out = OBJECTIVES["rws"](net, x, y, num_samples=4, q_weight=0.0, recognition_weight=0.0, hidden_weight=t,
                                top_weight=top, generator=torch.Generator().manual_seed(0))
        net.zero_grad()
        out["loss"].backward()
        grads[t, top] = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    base = grads[1.0, 1.0]
    assert {"V.0", "V.1", "V.2"} <= set(base) and base["V.1"].abs().sum() > 0
    for name in base:
        hidden = 3.0 if name in {"V.1", "c.1"} else 1.0
        assert torch.allclose(grads[3.0, 1.0][name], hidden * base[name], atol=1e-12), name
        both = hidden * (2.0 if name in {"V.2", "c.2"} else 1.0)
        assert torch.allclose(grads[3.0, 2.0][name], both * base[name], atol=1e-12), name


@pytest.mark.parametrize("objective", ["rws", "vimco"])
def test_multisample_recognition_term_runs_through_the_chosen_pass(objective):
    """`method` picks the pass of -log q(y|x): mean_variance gives the probit-corrected pass's cross-entropy,
    which differs from the deterministic one on a net with hidden-unit variance; the generative parts stay."""
    net = tiny_net(True)
    x, y = data(net)
    outs = {m: OBJECTIVES[objective](net, x, y, num_samples=3, method=m, generator=torch.Generator().manual_seed(0))
            for m in ("deterministic", "mean_variance")}
    for m, out in outs.items():
        expected = torch.nn.functional.cross_entropy(net.recognize(x, m), y)
        assert out["recognition"].item() == pytest.approx(expected.item(), abs=1e-12), m
    assert abs(outs["mean_variance"]["recognition"].item() - outs["deterministic"]["recognition"].item()) > 1e-4
    assert outs["mean_variance"]["bound"].item() == outs["deterministic"]["bound"].item()  # the same draws


@pytest.mark.parametrize("objective", ["rws", "vimco"])
def test_mean_variance_weight_adds_the_mean_variance_pass_to_the_recognition_term(objective):
    """Both passes trained at once: -log q(y|x) of the deterministic pass plus m times the mean-variance pass's,
    logged as `recognition` and weighted by recognition_weight like the term it extends; 0 leaves it out."""
    net = tiny_net(True)
    x, y = data(net)
    ce = {m: torch.nn.functional.cross_entropy(net.recognize(x, m), y).item()
          for m in ("deterministic", "mean_variance")}
    kw = dict(num_samples=3, recognition_weight=2.0)
    both = OBJECTIVES[objective](net, x, y, mean_variance_weight=0.5, generator=torch.Generator().manual_seed(0), **kw)
    plain = OBJECTIVES[objective](net, x, y, generator=torch.Generator().manual_seed(0), **kw)
    assert both["recognition"].item() == pytest.approx(ce["deterministic"] + 0.5 * ce["mean_variance"], abs=1e-12)
    assert plain["recognition"].item() == pytest.approx(ce["deterministic"], abs=1e-12)
    assert both["loss"].item() == pytest.approx(plain["loss"].item() + 2.0 * 0.5 * ce["mean_variance"], abs=1e-10)
    on_mv = OBJECTIVES[objective](net, x, y, method="mean_variance", mean_variance_weight=0.5,
                                  generator=torch.Generator().manual_seed(0), **kw)
    assert on_mv["recognition"].item() == pytest.approx(1.5 * ce["mean_variance"], abs=1e-12)
