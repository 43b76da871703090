"""RBM pretraining against exact answers: every visible and hidden state of a tiny layer enumerated."""

import pytest
import torch

from lightning_modules.model import CoupledSigmoidNet
from lightning_modules.rbm import cd_loss, free_energy, gibbs_chain, pretrain_rbms

from .test_model import all_states, tiny_net


def neg_energy(net, k, u, v):
    """-E(u, v) = v^T W_k u + b_k^T v + c_k^T u for every pair of rows: (len(u), len(v))."""
    return u @ net.W[k].t() @ v.t() + (v @ net.b[k])[None, :] + (u @ net.c[k])[:, None]


def exact_log_p(net, k, u):
    """log p(u) of layer k's RBM for rows u, with Z summed over every visible and hidden state."""
    d_out, d_in = net.W[k].shape
    log_joint = neg_energy(net, k, all_states(d_in), all_states(d_out))
    return torch.logsumexp(neg_energy(net, k, u, all_states(d_out)), 1) - torch.logsumexp(log_joint.flatten(), 0)


def test_free_energy_sums_out_the_hidden_layer():
    net = tiny_net([5, 4, 3, 3], std=0.8)
    for k in range(2):
        u = all_states(net.sizes[k])
        exact = -torch.logsumexp(neg_energy(net, k, u, all_states(net.sizes[k + 1])), 1)
        torch.testing.assert_close(free_energy(net, k, u), exact)


def test_gibbs_down_step_is_the_tied_generation_conditional():
    """The RBM's p(u | v) is the pair's generation layer; untied, the RBM still reads W^T, not V."""
    for tied in (True, False):
        net = tiny_net([5, 4, 3], tied=tied, std=0.8)
        u = all_states(5)[:8]
        _, probs = gibbs_chain(net, 0, u, 1, torch.Generator().manual_seed(0))
        draws = torch.rand(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        v = draws < torch.sigmoid(net.up_logits(0, u))
        w_down = torch.sigmoid(v.double() @ net.W[0] + net.c[0])
        torch.testing.assert_close(probs, w_down)  # the same draws: the generator is consumed in the same order
        if tied:
            torch.testing.assert_close(probs, torch.sigmoid(net.down_logits(0, v.double())))


def test_cd_gradient_with_long_chains_is_the_exact_log_likelihood_gradient():
    """CD-k's model term comes from chains started at the data; with k long enough to mix they sample the RBM, so
    the surrogate's gradient is -∇ mean log p(u), exact by enumeration (tolerance: Monte Carlo noise of 48,000
    chains, about 0.003 per entry, against entries up to 0.36). CD-1, whose chains have not mixed, is 0.08 off."""
    net = tiny_net([5, 4, 3], std=1.5)
    u = all_states(5)[torch.tensor([3, 7, 12, 21, 30, 31])]
    params = [net.W[0], net.b[0], net.c[0]]
    exact = torch.autograd.grad(-exact_log_p(net, 0, u).mean(), params)
    g = torch.Generator().manual_seed(0)
    chains = u.repeat(8000, 1)

    def cd_grad(steps):
        return torch.autograd.grad(cd_loss(net, 0, chains, steps, g)["loss"], params)

    long_run, cd1 = cd_grad(25), cd_grad(1)
    for est, ex in zip(long_run, exact):
        torch.testing.assert_close(est, ex, atol=0.01, rtol=0.02)
    assert max((a - b).abs().max().item() for a, b in zip(cd1, exact)) > 0.04


@pytest.mark.parametrize("tied", [True, False])
def test_pretraining_raises_the_exact_rbm_likelihood_and_leaves_the_class_layer(tied):
    net = tiny_net([6, 4, 3, 3], tied=tied, std=0.1)
    patterns = all_states(6)[torch.tensor([7, 56, 42, 21])]  # four binary images, so x0 ~ Bern(x) is x
    x = patterns.repeat(64, 1)
    before = exact_log_p(net, 0, patterns).mean()
    W1_before = net.W[1].detach().clone()
    untouched = {name: p.detach().clone() for name, p in net.named_parameters() if name.endswith(".2")}
    records = pretrain_rbms(net, x, epochs=20, batch_size=32, lr=0.05, seed=1)
    after = exact_log_p(net, 0, patterns).mean()
    # uniform over 64 states is log(1/64) = -4.16; the four images alone would be log(1/4) = -1.39
    assert before < -4.0 and after > -2.5, (before, after)
    assert not torch.equal(net.W[1], W1_before)  # the second hidden layer is pretrained too
    assert sorted(untouched) == (["V.2"] if not tied else []) + ["W.2", "b.2", "c.2"]
    assert all(torch.equal(p, untouched[name]) for name, p in net.named_parameters() if name in untouched)
    assert [r["layer"] for r in records] == [1, 2] and records[0]["sizes"] == (6, 4)
    assert records[0]["reconstruction"][-1] < records[0]["reconstruction"][0]
    if not tied:  # the DBN's untying: generation starts from the pretrained weights
        assert all(torch.equal(net.V[k], net.W[k]) for k in range(2))
    again = tiny_net([6, 4, 3, 3], tied=tied, std=0.1)
    pretrain_rbms(again, x, epochs=20, batch_size=32, lr=0.05, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), net.parameters()))  # seeded: reproducible


def test_pretraining_stops_when_asked():
    net = CoupledSigmoidNet([5, 4, 3, 3])
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    calls = []
    stop = lambda: calls.append(1) or len(calls) > 3  # noqa: E731
    assert pretrain_rbms(net, torch.rand(64, 5), 100, batch_size=16, should_stop=stop) is None
    assert len(calls) == 4  # asked before every batch: three batches ran, all of the first layer
    changed = {k for k, p in net.named_parameters() if not torch.equal(p, before[k])}
    assert changed == {"W.0", "b.0", "c.0"}
