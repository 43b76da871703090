"""GenerativeLearner: sizes from the data, every objective trains, the test protocol logs its metrics."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules import OBJECTIVES, ConfigError, GenerativeLearner
from lightning_modules.learner import flushing_denormals
from lightning_modules.objectives import generative_scale, scale_generative


def blobs(n=96, d=12, classes=3, seed=0):
    """Separable binary-ish data: each class lights a different third of the pixels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    proto = torch.zeros(classes, d)
    for k in range(classes):
        proto[k, k * d // classes : (k + 1) * d // classes] = 0.9
    x = (proto[y] + 0.05 * torch.rand(n, d, generator=g)).clamp(0, 1)
    return x, y


def loader(n=96, shuffle=False):
    return DataLoader(TensorDataset(*blobs(n)), batch_size=32, shuffle=shuffle)


def trainer(**kw):
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kw)


def test_sizes_follow_the_data():
    model = GenerativeLearner(hidden_sizes=[7, 5], input_dim=12, num_classes=3)
    assert model.net.sizes == [12, 7, 5, 3]
    assert GenerativeLearner(sizes=[12, 4, 3], input_dim=12, num_classes=3).net.sizes == [12, 4, 3]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sizes=[10, 4, 3], input_dim=12, num_classes=3), "do not match the data's input size 12"),
        (dict(sizes=[12, 4, 5], input_dim=12, num_classes=3), "class count 3"),
        (dict(hidden_sizes=[0], input_dim=12, num_classes=3), "positive"),
        (dict(hidden_sizes=[-4], input_dim=12, num_classes=3), "positive"),
        (dict(hidden_sizes=[4]), "input size and class count"),
        (dict(sizes=[12, 3], objective="contrastive"), "unknown objective 'contrastive'"),
        (dict(sizes=[12, 3], lr=0.0), "lr must be > 0"),
        (dict(sizes=[12, 3], objective_kwargs={"temperature": 2}), "no option(s) temperature"),
        (dict(sizes=[12, 4, 3], objective="wake_sleep", compile=True), "model.compile supports the deterministic"),
        (dict(sizes=[12, 3], objective_kwargs={"generation_weight": -1}), "generation_weight must be a number >= 0"),
        (dict(sizes=[12, 3], objective_kwargs={"generation_weight": "abc"}), "must be a number >= 0, got 'abc'"),
        (dict(sizes=[12, 4, 3], objective="rws", objective_kwargs={"q_weight": -0.5}), "q_weight must be"),
        (dict(sizes=[12, 4, 3], objective="rws", objective_kwargs={"num_samples": 0}), "integer >= 1"),
        (dict(sizes=[12, 4, 3], objective="vimco", objective_kwargs={"num_samples": 1}), "integer >= 2"),
        (dict(sizes=[12, 4, 3], fitted_proposal_steps=-1), "fitted_proposal_steps >= 0"),
        (dict(sizes=[12, 4, 3], fitted_proposal_init="best"), "fitted_proposal_init must be one of fresh, own"),
        (dict(sizes=[12, 4, 3], generative_ramp_epochs=-1), "generative_ramp_epochs must be >= 0"),
        (dict(sizes=[12, 4, 3], rbm_pretrain_epochs=-1), "rbm_pretrain_epochs must be an integer >= 0"),
        (dict(sizes=[12, 4, 3], rbm_pretrain_epochs=1.5), "rbm_pretrain_epochs must be an integer >= 0"),
        (dict(sizes=[12, 4, 3], rbm_cd_steps=0), "rbm_cd_steps an integer >= 1"),
        (dict(sizes=[12, 3], rbm_pretrain_epochs=1), "have none; add model.hidden_sizes"),
    ],
)
def test_bad_configuration_is_one_clear_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        GenerativeLearner(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_compiled_objective_trains_the_same_weights_as_eager():
    """model.compile changes how the step runs, not what it computes: same data, same seed, same weights."""
    weights = {}
    for compiled in (False, True):
        pl.seed_everything(0)
        model = GenerativeLearner(hidden_sizes=[8, 6], input_dim=12, num_classes=3, compile=compiled)
        trainer(max_epochs=2).fit(model, loader(), loader())
        weights[compiled] = [p.detach().clone() for p in model.parameters()]
        assert (model._compiled_objective is not None) == compiled
    for eager, compiled in zip(weights[False], weights[True]):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize("tied", [True, False])
def test_every_objective_trains_and_logs_its_parts(objective, tied):
    pl.seed_everything(0)
    model = GenerativeLearner(hidden_sizes=[8], input_dim=12, num_classes=3, objective=objective, tied=tied)
    t = trainer(max_epochs=1)
    t.fit(model, loader(shuffle=True), loader())
    parts = set(OBJECTIVES[objective](model.net, *blobs(4))) - {"loss"}
    logged = set(t.callback_metrics)
    assert {"train/loss_epoch", "val/loss", "val/acc"} <= logged
    assert {f"train/{p}_epoch" for p in parts} <= logged and {f"val/{p}" for p in parts} <= logged


def test_symmetric_training_learns_both_directions():
    pl.seed_everything(0)
    model = GenerativeLearner(hidden_sizes=[16], input_dim=12, num_classes=3, lr=0.05)
    x, y = blobs(300)
    before = model.net.log_likelihood((x > 0.5).float(), y, 1).mean()
    t = trainer(max_epochs=15)
    t.fit(model, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True), loader())
    assert t.callback_metrics["val/acc"] == 1.0
    assert model.net.log_likelihood((x > 0.5).float(), y, 1).mean() > before + 2  # generation improved
    # the class-conditional mean image lights the class's own third of the pixels
    mean = model.net.generate_mean(torch.arange(3))
    assert all(mean[k, k * 4 : (k + 1) * 4].mean() > mean[k].mean() for k in range(3))


def test_test_protocol_logs_every_metric_and_elbo_bounds_likelihood():
    pl.seed_everything(0)
    model = GenerativeLearner(hidden_sizes=[8], input_dim=12, num_classes=3, eval_num_samples=200,
                              self_consistency_per_class=50)
    t = trainer(max_epochs=3)
    t.fit(model, loader(shuffle=True))
    # E[ELBO] <= E[L_K]: one sample per image, so enough images that the means' noise is far below the gap
    m = t.test(model, loader(960), verbose=False)[0]
    assert set(m) >= {"test/acc", "test/loss", "test/elbo", "test/log_likelihood", "test/self_consistency"}
    assert m["test/elbo"] <= m["test/log_likelihood"] <= 0
    assert 0 <= m["test/self_consistency"] <= 1
    # the likelihood is computed on a fixed binarization: testing twice gives the same numbers
    again = t.test(model, loader(960), verbose=False)[0]
    assert again["test/log_likelihood"] == pytest.approx(m["test/log_likelihood"], abs=1e-6)


class BlobData(pl.LightningDataModule):
    """Loaders plus the raw training tensors, which the fitted-proposal likelihood reads."""

    def split_tensors(self, split):
        x, y = blobs(96)
        return (x * 255).round().to(torch.uint8), y

    def train_dataloader(self):
        return loader(shuffle=True)

    def test_dataloader(self):
        return loader()


def test_fitted_proposal_likelihood_is_logged_and_beats_a_poor_own_proposal():
    """Untied and without its q-term, the pair's recognition network never learns the generator's posterior
    (only the class); a recognition network fitted to the frozen generator is a far better proposal."""
    pl.seed_everything(0)
    model = GenerativeLearner(hidden_sizes=[8], input_dim=12, num_classes=3, eval_num_samples=5,
                              self_consistency_per_class=0, fitted_proposal_steps=300, objective="rws",
                              objective_kwargs={"q_weight": 0.0}, lr=0.05, tied=False)
    t = trainer(max_epochs=10)
    t.fit(model, datamodule=BlobData())
    m = t.test(model, datamodule=BlobData(), verbose=False)[0]
    assert m["test/log_likelihood_fitted"] > m["test/log_likelihood"]
    assert m["test/log_likelihood_fitted"] <= 0
    assert "_proposal" not in dict(model.named_modules()) and not any("proposal" in k for k in model.state_dict())


def test_hyperparameters_and_weights_round_trip_through_a_checkpoint(tmp_path):
    model = GenerativeLearner(hidden_sizes=[8], input_dim=12, num_classes=3, objective="wake_sleep", tied=False)
    t = trainer(max_epochs=1)
    t.fit(model, loader())
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["hyper_parameters"]["objective"] == "wake_sleep"
    back = GenerativeLearner.load_from_checkpoint(path, weights_only=True)
    assert back.net.sizes == [12, 8, 3] and not back.net.tied
    assert all(torch.equal(a, b) for a, b in zip(back.net.V, model.net.V))


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_lr_schedules_step_per_epoch(schedule):
    model = GenerativeLearner(sizes=[12, 4, 3], lr=0.1, lr_schedule=schedule, lr_step_size=1, lr_gamma=0.5)
    t = trainer(max_epochs=2)
    t.fit(model, loader())
    assert t.optimizers[0].param_groups[0]["lr"] < 0.1


def test_learned_prior_fits_the_class_frequencies():
    pl.seed_everything(0)
    x, y = blobs(240)
    keep = torch.cat([torch.nonzero(y == 0).flatten(), torch.nonzero(y != 0).flatten()[::4]])  # class 0: 2/3
    model = GenerativeLearner(hidden_sizes=[8], input_dim=12, num_classes=3, learn_prior=True, lr=0.05)
    trainer(max_epochs=30).fit(model, DataLoader(TensorDataset(x[keep], y[keep]), batch_size=40, shuffle=True))
    freq = torch.bincount(y[keep], minlength=3).float() / len(keep)
    prior = torch.softmax(model.net.prior_logits.detach(), -1)
    assert (prior - freq).abs().max() < 0.03
    drawn = torch.bincount(model.net.sample_classes(20_000, torch.Generator().manual_seed(0)), minlength=3) / 20_000
    assert (drawn - prior).abs().max() < 0.015  # y ~ prior, the top of the generation network


def test_predict_returns_class_probabilities():
    model = GenerativeLearner(sizes=[12, 6, 3])
    preds = trainer().predict(model, loader())
    probs = torch.cat(preds)
    assert probs.shape == (96, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(96))
    torch.testing.assert_close(probs, torch.softmax(model.net.recognize(blobs(96)[0]), -1))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizer_uses_fused_kernels_and_matches_the_reference_update(name):
    from lightning_modules import make_optimizer

    torch.manual_seed(0)
    a, b = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    b.load_state_dict(a.state_dict())
    fused = make_optimizer(a.parameters(), name, lr=0.1, weight_decay=0.01)
    assert fused.param_groups[0]["fused"] is True
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    extra = {"momentum": 0.9} if name == "sgd" else {}
    reference = cls(b.parameters(), lr=0.1, weight_decay=0.01, **extra)  # the per-parameter implementation
    for step in range(3):
        x = torch.randn(5, 6, generator=torch.Generator().manual_seed(step))
        for model, opt in ((a, fused), (b, reference)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    # a parameter on a device without fused kernels (here the meta device): the per-parameter implementation
    meta = torch.nn.Parameter(torch.empty(3, device="meta"))
    assert make_optimizer([meta], name).param_groups[0]["fused"] is None


def test_configure_optimizers_is_fused_on_the_cpu():
    model = GenerativeLearner(sizes=[12, 4, 3])
    assert model.configure_optimizers().param_groups[0]["fused"] is True


def test_generative_schedule_values():
    assert [generative_scale(p, 1, 2) for p in (0, 0.99, 1, 2, 3, 9)] == [0, 0, 0, 0.5, 1, 1]
    assert generative_scale(0, 0, 0) == 1 and generative_scale(0.5, 0, 0) == 1  # no schedule
    assert generative_scale(0.25, 0, 1) == 0.25  # ramped from the start


def test_scaled_rws_loss_is_recognition_plus_scaled_generative_terms():
    torch.manual_seed(0)
    net = GenerativeLearner(sizes=[12, 4, 3]).net
    kw = dict(num_samples=3, generation_weight=0.7, q_weight=0.2, recognition_weight=2.0)
    out = OBJECTIVES["rws"](net, *blobs(8), generator=torch.Generator().manual_seed(1), **kw)
    half = scale_generative(out, 0.5, 2.0)
    expected = 2.0 * out["recognition"] + 0.5 * (0.7 * out["generation"] + 0.2 * out["q"])
    assert torch.allclose(half["loss"], expected) and half["generative_scale"] == 0.5
    assert torch.equal(scale_generative(out, 0.0, 2.0)["loss"], 2.0 * out["recognition"])
    assert torch.equal(scale_generative(out, 1.0, 2.0)["loss"], out["loss"])


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_at_scale_zero_only_the_recognition_term_has_a_gradient(objective):
    """Every objective's loss is recognition_weight * -log q(y|x) plus its generative terms: at scale 0 its
    gradient is exactly that of the recognition term (the untied generator's own V and c get none)."""
    torch.manual_seed(0)
    model = GenerativeLearner(sizes=[12, 4, 3], objective=objective, tied=False)
    kw = {"generator": torch.Generator().manual_seed(1)} if model.stochastic_objective else {}
    x, y = blobs(8)
    out = scale_generative(model.objective(model.net, x, y, **kw), 0.0)
    out["loss"].backward()
    assert model.net.V[0].grad is None or not model.net.V[0].grad.any()
    assert model.net.c[0].grad is None or not model.net.c[0].grad.any()
    grads = [p.grad.clone() for p in model.net.W]
    model.zero_grad()
    torch.nn.functional.cross_entropy(model.net.recognize(x), y).backward()
    assert all(torch.allclose(g, p.grad) for g, p in zip(grads, model.net.W))


def test_recognition_first_leaves_the_generator_alone_until_the_delay_ends():
    """Untied, the generator's own weights (V, c) get gradient only from the generative terms: during the
    delay they stay as they started, the recognition weights move; after it the generator learns too."""
    pl.seed_everything(0)
    model = GenerativeLearner(hidden_sizes=[8], input_dim=12, num_classes=3, objective="rws", tied=False,
                              generative_delay_epochs=1, generative_ramp_epochs=1)
    V0, c0, W0 = (p.detach().clone() for p in (model.net.V[0], model.net.c[0], model.net.W[0]))
    t = trainer(max_epochs=1)
    t.fit(model, loader(shuffle=True))
    assert torch.equal(model.net.V[0], V0) and torch.equal(model.net.c[0], c0)
    assert not torch.equal(model.net.W[0], W0)
    assert t.callback_metrics["train/generative_scale_epoch"] == 0
    t = trainer(max_epochs=2)  # epoch 2: ramped over its 3 steps (0, 1/3, 2/3)
    t.fit(model, loader(shuffle=True))
    assert not torch.equal(model.net.V[0], V0)
    assert torch.isclose(t.callback_metrics["train/generative_scale_epoch"], torch.tensor(1 / 3))


class WeightsAtTrainStart(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.weights = [p.detach().clone() for p in pl_module.net.parameters()]


@pytest.mark.parametrize("tied", [True, False])
def test_rbm_pretraining_runs_before_the_first_step_of_a_fresh_fit_only(tmp_path, monkeypatch, tied):
    import copy

    from lightning_modules import pretraining
    from lightning_modules.rbm import pretrain_rbms
    from lightning_modules.seeds import stream_seed

    pl.seed_everything(0)
    model = GenerativeLearner(hidden_sizes=[8, 6], input_dim=12, num_classes=3, objective="rws", tied=tied,
                              rbm_pretrain_epochs=2, rbm_cd_steps=2, self_consistency_per_class=0)
    expected = copy.deepcopy(model.net)
    x = BlobData().split_tensors("train")[0].double() / 255
    pretrain_rbms(expected, x.float(), 2, 2, lr=model.hparams.lr, seed=stream_seed(0, "rbm_pretrain"))
    seen = WeightsAtTrainStart()
    t = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   max_epochs=1, callbacks=[seen], default_root_dir=tmp_path)
    t.fit(model, datamodule=BlobData())
    # the weights the first training step starts from are exactly pretrain_rbms' (class layer untouched)
    assert all(torch.equal(a, b) for a, b in zip(seen.weights, expected.parameters()))
    assert not torch.equal(expected.W[0], copy.deepcopy(model).net.W[0])  # the fit trained on from there
    # a resumed fit continues from its checkpoint's weights: no second pretraining
    path = tmp_path / "epoch1.ckpt"
    t.save_checkpoint(path)
    monkeypatch.setattr(pretraining, "pretrain_rbms", lambda *a, **k: pytest.fail("pretrained again on resume"))
    resumed = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         max_epochs=2, default_root_dir=tmp_path)
    resumed.fit(GenerativeLearner.load_from_checkpoint(path, weights_only=True), datamodule=BlobData(),
                ckpt_path=path)
    assert resumed.current_epoch == 2


def test_rbm_pretraining_without_the_training_tensors_is_one_clear_line():
    model = GenerativeLearner(hidden_sizes=[8], input_dim=12, num_classes=3, rbm_pretrain_epochs=1)
    with pytest.raises(ConfigError, match="needs a DataModule with split_tensors"):
        trainer(max_epochs=1).fit(model, loader())


def test_rbm_pretraining_under_fast_dev_run_is_one_batch_one_epoch(monkeypatch):
    from lightning_modules import pretraining

    calls = []
    monkeypatch.setattr(pretraining, "pretrain_rbms",
                        lambda net, x, epochs, *a, **k: calls.append((len(x), epochs)) or [])

    class MoreBlobs(BlobData):
        def split_tensors(self, split):
            x, y = blobs(300)
            return (x * 255).round().to(torch.uint8), y

    model = GenerativeLearner(hidden_sizes=[8], input_dim=12, num_classes=3, rbm_pretrain_epochs=50)
    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               fast_dev_run=True).fit(model, datamodule=MoreBlobs())
    assert calls == [(128, 1)]  # of 300 training images


def test_rbm_pretraining_refuses_strategies_that_restore_after_fit_start_in_one_line():
    """FSDP, DeepSpeed and the like restore a checkpoint after on_fit_start (a resume would pretrain again) and
    shard the weights (rank 0's cannot simply be broadcast)."""
    from types import SimpleNamespace

    model = GenerativeLearner(hidden_sizes=[8], input_dim=12, num_classes=3, rbm_pretrain_epochs=1)
    FSDPLike = type("FSDPStrategy", (), {})
    model._trainer = SimpleNamespace(strategy=FSDPLike(), ckpt_path=None)
    with pytest.raises(ConfigError, match="runs on one device or under DDP, not FSDPStrategy") as err:
        model.on_fit_start()
    assert "\n" not in str(err.value)


def test_fit_flushes_denormals():
    """Late in long CPU runs Adam's moments and saturated pixel probabilities underflow to denormals, on which
    arithmetic is many times slower (scripts/bench_denormals.py): fitting turns on flush-to-zero."""
    torch.set_flush_denormal(False)
    try:
        assert not flushing_denormals()  # a denormal is kept without the flag
        model = GenerativeLearner(hidden_sizes=[4], input_dim=12, num_classes=3, objective="rws")
        trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(model, loader())
        assert flushing_denormals()
    finally:
        torch.set_flush_denormal(False)
