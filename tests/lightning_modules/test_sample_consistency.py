"""`sample_consistency` (rws's `sample_consistency_weight`) against exact answers: every state of a tiny
generator enumerated, so how often its ancestral samples are recognised as their class is known exactly."""

import pytest
import torch

from lightning_modules.objectives import check_objective_kwargs, rws, sample_consistency, sample_q

from .test_model import all_states, log_bern, tiny_net

SIZES = [5, 4, 3, 3]


def exact_sample_recognition(net) -> tuple[float, float]:
    """(E -log q(y | x0), P(q's argmax on x0 is y)) for x0 ~ p(x0 | y), classes uniform, q the deterministic pass
    that is tested: p(x0 | y) summed over every hidden state, layer by layer."""
    C = net.num_classes
    upper, P = net.onehot(torch.arange(C)), torch.eye(C, dtype=torch.float64)  # P: (class, state of the layer)
    for k in reversed(range(net.num_layers)):
        lower, a = all_states(net.sizes[k]), net.down_logits(k, upper)  # a: (states above, d_k)
        log_t = log_bern(lower[None], a[:, None])  # (states above, states of x_k)
        P, upper = P @ log_t.exp(), lower  # (class, states of x_k)
    assert torch.allclose(P.sum(1), torch.ones(C, dtype=P.dtype))  # a distribution over x0 for each class
    log_q = torch.log_softmax(net.recognize(upper), -1)  # (states of x0, class)
    hit = (log_q.argmax(-1)[None, :] == torch.arange(C)[:, None]).double()
    return -(P * log_q.t()).sum().item() / C, (P * hit).sum().item() / C


def test_the_exact_probabilities_sum_to_one_per_class():
    net = tiny_net(SIZES, std=0.8)
    loss, acc = exact_sample_recognition(net)
    assert 0 < acc < 1 and loss > 0
    # against sampling: 20,000 draws of each class recognised by the same pass
    y = torch.arange(3).repeat(20000)
    x0 = net.sample_down(y, torch.Generator().manual_seed(0))[0]
    assert abs((net.recognize(x0).argmax(-1) == y).double().mean().item() - acc) < 0.01


def test_descending_the_term_makes_the_samples_recognised_exactly():
    """Minimised alone, the term must raise the exact probability that a sample is recognised as its class and
    lower the exact expected -log q(y | x0) (both passes share the tied weights, so it moves both networks)."""
    def descend(term):
        net = tiny_net(SIZES, std=0.8, seed=2)
        opt = torch.optim.Adam(net.parameters(), lr=0.03)
        g = torch.Generator().manual_seed(0)
        y = torch.arange(3).repeat(64)
        for _ in range(200):
            opt.zero_grad()
            term(net, y, g).backward()
            opt.step()
        return exact_sample_recognition(net)

    def top_only(net, y, g):  # the top layer's step alone: what the check must tell apart from the whole walk
        top = torch.sigmoid(net.down_logits(net.num_layers - 1, net.onehot(y)))
        return torch.nn.functional.cross_entropy(net.up_logits(net.num_layers - 1, top, "mean_variance"), y)

    loss0, acc0 = exact_sample_recognition(tiny_net(SIZES, std=0.8, seed=2))
    loss1, acc1 = descend(sample_consistency)
    assert loss1 < 0.6 * loss0 and acc1 > acc0 + 0.3, (loss0, acc0, loss1, acc1)
    assert descend(top_only)[1] < acc0 + 0.3


def test_a_frozen_reader_trains_the_generator_alone_and_it_still_keeps_the_class():
    """reader="frozen": the same value, gradient only through the layers that draw. Untied, W and b get none and V
    and c all of it; tied, minimised alone it still raises the exact probability that a sample is recognised."""
    y = torch.arange(3).repeat(4)
    untied = tiny_net(SIZES, tied=False, std=0.8)
    trained = sample_consistency(untied, y, torch.Generator().manual_seed(3))
    frozen = sample_consistency(untied, y, torch.Generator().manual_seed(3), reader="frozen")
    assert torch.equal(trained, frozen)
    down = [*untied.V, *untied.c]
    g_frozen = torch.autograd.grad(frozen, [*untied.W, *untied.b, *down], allow_unused=True)
    g_trained = torch.autograd.grad(trained, down)
    assert all(g is None or not g.any() for g in g_frozen[: 2 * untied.num_layers])  # the reader: untouched
    for gf, gt, name in zip(g_frozen[2 * untied.num_layers:], g_trained, ["V"] * 3 + ["c"] * 3):
        torch.testing.assert_close(gf, gt, msg=name)  # the drawing layers: as with the reader trained

    # through rws's option too
    x = untied.sample_down(y, torch.Generator().manual_seed(1))[0]
    out = rws(untied, x, y, num_samples=2, sample_consistency_weight=1.0, sample_consistency_reader="frozen",
              generator=torch.Generator().manual_seed(5))
    assert all(g is None or not g.any()
               for g in torch.autograd.grad(out["consistency"], list(untied.W), allow_unused=True))
    with pytest.raises(ValueError, match="reader must be one of trained, frozen"):
        sample_consistency(untied, y, reader="fixed")

    net = tiny_net(SIZES, std=0.8, seed=2)
    loss0, acc0 = exact_sample_recognition(net)
    opt, g = torch.optim.Adam(net.parameters(), lr=0.03), torch.Generator().manual_seed(0)
    for _ in range(200):
        opt.zero_grad()
        sample_consistency(net, torch.arange(3).repeat(64), g, reader="frozen").backward()
        opt.step()
    loss1, acc1 = exact_sample_recognition(net)
    assert loss1 < loss0 and acc1 > acc0 + 0.2, (loss0, acc0, loss1, acc1)


def test_rws_adds_the_term_with_its_weight_and_the_rest_unchanged():
    net = tiny_net(SIZES, std=0.8)
    x, y = net.sample_down(torch.arange(6) % 3, torch.Generator().manual_seed(1))[0], torch.arange(6) % 3
    base = rws(net, x, y, num_samples=4, sleep_weight=1.0, generator=torch.Generator().manual_seed(5))
    out = rws(net, x, y, num_samples=4, sleep_weight=1.0, sample_consistency_weight=0.5,
              generator=torch.Generator().manual_seed(5))
    assert "consistency" not in base  # off by default: the loss is rws's own
    for k in ("recognition", "generation", "q", "bound", "sleep"):
        assert torch.equal(out[k], base[k]), k  # its draws come after the importance samples'
    torch.testing.assert_close(out["loss"], base["loss"] + 0.5 * out["consistency"])
    grads = torch.autograd.grad(out["consistency"], list(net.W))
    assert all(g.abs().sum() > 0 for g in grads)  # it reaches every layer's weights


def test_rows_take_the_first_labels_of_the_batch():
    net = tiny_net(SIZES, std=0.8)
    x, y = net.sample_down(torch.arange(6) % 3, torch.Generator().manual_seed(1))[0], torch.arange(6) % 3
    out = rws(net, x, y, num_samples=4, sample_consistency_weight=1.0, sample_consistency_rows=2,
              generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    sample_q(net, x, 4, g)  # rws's own draws come first
    torch.testing.assert_close(out["consistency"], sample_consistency(net, y[:2], g))


def test_the_options_are_checked():
    check_objective_kwargs("rws", {"sample_consistency_weight": 0.1, "sample_consistency_rows": 32})
    with pytest.raises(Exception, match="sample_consistency_weight must be a number >= 0"):
        check_objective_kwargs("rws", {"sample_consistency_weight": -1})
    for bad in (-1, 2.5, "32"):
        with pytest.raises(Exception, match="sample_consistency_rows must be an integer >= 0"):
            check_objective_kwargs("rws", {"sample_consistency_rows": bad})
    check_objective_kwargs("rws", {"sample_consistency_reader": "frozen"})
    with pytest.raises(Exception, match="sample_consistency_reader must be one of trained, frozen, got 'fixed'"):
        check_objective_kwargs("rws", {"sample_consistency_reader": "fixed"})


def test_a_term_started_late_trains_from_its_epoch_and_is_always_validated():
    """`objective_start_epochs`: the term is off in training before its epoch and on after; validation always
    has it, so `val/loss` (the checkpoint's monitor) measures one objective over the whole run."""
    from lightning_modules import GenerativeLearner

    from .test_learner import loader, trainer

    torch.manual_seed(0)
    model = GenerativeLearner(hidden_sizes=[8, 6], input_dim=12, num_classes=3, objective="rws",
                              objective_kwargs={"num_samples": 2, "sample_consistency_weight": 1.0},
                              objective_start_epochs={"sample_consistency_weight": 2})
    calls, done, objective = [], [], model._objective

    def spy(x, y, stream, *position):
        out = objective(x, y, stream, *position)
        calls.append((stream, model.current_epoch, "consistency" in out))
        done.append((model.current_epoch, model.generative_schedule_done))
        return out

    model._objective = spy
    trainer(max_epochs=3, limit_val_batches=1, num_sanity_val_steps=0).fit(model, loader(), loader())
    assert {(e, has) for s, e, has in calls if s == "train"} == {(0, False), (1, False), (2, True)}
    assert {(e, has) for s, e, has in calls if s == "val"} == {(0, True), (1, True), (2, True)}
    # and the best-model checkpoint waits for it (callbacks/checkpoint.py), as for the generative schedule
    assert set(done) == {(0, False), (1, False), (2, True)}


@pytest.mark.parametrize("start, message", [
    ({"q_weight": 2}, "add q_weight to it, or drop the start (--model.objective_start_epochs null"),  # not set
    ({"num_samples": 2}, "objective_start_epochs.num_samples"),  # not a weight
    ({"recognition_weight": 2}, "objective_start_epochs.recognition_weight"),  # not a generative term
    ({"top_weight": 2}, "objective_start_epochs.top_weight"),  # a multiplier: at 0 it is not off
    ({"sample_consistency_weight": 1.5}, "objective_start_epochs.sample_consistency_weight: 1.5"),
    ({"sample_consistency_weight": -1}, "an integer >= 0"),
])
def test_a_bad_start_is_one_line(start, message):
    from lightning_modules import ConfigError, GenerativeLearner

    with pytest.raises(ConfigError) as err:
        GenerativeLearner(sizes=[12, 4, 3], objective="rws", objective_start_epochs=start,
                          objective_kwargs={"num_samples": 2, "sample_consistency_weight": 1.0,
                                            "recognition_weight": 1.0, "top_weight": 10.0})
    assert message in str(err.value) and "\n" not in str(err.value)
