"""Sample quality and approximate-inference quality: the reproduction report's evaluation callback."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from callbacks.sample_quality import SampleQuality, approximation_error, class_samples, diversity, sample_accuracy
from datamodules import HFImageDataModule
from lightning_modules import CoupledSigmoidNet, GenerativeLearner
from lightning_modules.reference import ReferenceCNN
from lightning_modules.seeds import stream_generator


def test_diversity_is_one_for_real_images_and_zero_for_a_repeated_image():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(200, 16, generator=g)
    labels = torch.arange(200) % 2
    assert diversity(real, labels, real, labels) == pytest.approx(1.0)
    collapsed = real[labels == 0][:1].repeat(200, 1)
    assert diversity(collapsed, labels, real, labels) == pytest.approx(0.0, abs=1e-6)


def test_class_samples_come_in_class_order_and_are_binary():
    net = CoupledSigmoidNet([9, 5, 3])
    x, y = class_samples(net, per_class=4, seed=1)
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert x.shape == (12, 9) and ((x == 0) | (x == 1)).all()
    torch.testing.assert_close(x, class_samples(net, per_class=4, seed=1)[0])  # seeded


def test_pixel_mean_samples_are_the_means_of_the_same_draws_and_average_to_the_binary_samples():
    torch.manual_seed(0)
    net = CoupledSigmoidNet([9, 5, 4, 3])
    means, y = class_samples(net, per_class=4000, seed=1, kind="means")
    binary, y2 = class_samples(net, per_class=4000, seed=1)
    assert torch.equal(y, y2) and not ((means == 0) | (means == 1)).all()
    g = stream_generator(1, "sample_quality")  # the callback's named stream
    x1 = net.sample_down(y[:4096], g)[1]  # class_samples draws in chunks of 4096
    torch.testing.assert_close(means[:4096], torch.sigmoid(net.down_logits(0, x1)))  # same draws, up to x1
    # both estimate p(x0 = 1 | y): per class they agree within sampling error (binary std <= 0.5 / sqrt(4000))
    for c in range(3):
        assert (means[y == c].mean(0) - binary[y == c].mean(0)).abs().max() < 0.04
    with pytest.raises(ValueError, match="sample kind"):
        class_samples(net, per_class=1, kind="mean")


def test_sample_accuracy_counts_agreement_with_the_classifier():
    samples, labels = torch.eye(3).repeat(2, 1), torch.tensor([0, 1, 2, 0, 1, 0])
    assert sample_accuracy(samples, labels, torch.nn.Identity()) == pytest.approx(5 / 6)


def test_approximation_error_is_per_hidden_layer_and_smaller_for_mean_variance():
    torch.manual_seed(0)
    net = CoupledSigmoidNet([30, 40, 40, 5])
    with torch.no_grad():
        for w in net.W:
            w.normal_(0, 0.6)
    x = (torch.rand(16, 30) < 0.5).float()
    err = approximation_error(net, x, num_samples=2000)
    assert set(err) == {"deterministic", "mean_variance"} and all(len(v) == 2 for v in err.values())
    assert sum(err["mean_variance"]) < sum(err["deterministic"])


def test_callback_logs_every_measure_at_test_end(tiny_data, decoded_cache, tmp_path):
    pl.seed_everything(0)
    dm = HFImageDataModule(data_dir=str(tiny_data), cache_dir=str(decoded_cache), batch_size=32, val_size=50)
    clf = ReferenceCNN(image_shape=dm.image_shape, num_classes=dm.num_classes, width=4)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(clf, datamodule=dm)
    ckpt = tmp_path / "clf.ckpt"
    trainer.save_checkpoint(ckpt, weights_only=True)

    model = GenerativeLearner(hidden_sizes=[8], input_dim=dm.input_dim, num_classes=dm.num_classes,
                              eval_num_samples=5, self_consistency_per_class=5)
    quality = SampleQuality(str(ckpt), per_class=20, marginal_images=10, mc_samples=50)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[quality])
    trainer.fit(model, datamodule=dm)
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    for key in ("test/sample_acc", "test/sample_acc_means", "test/diversity", "test/approx_error/deterministic/layer1",
                "test/approx_error/mean_variance/layer1"):
        assert key in metrics and metrics[key] == pytest.approx(quality.results[key.removeprefix("test/")])
    assert 0 <= metrics["test/sample_acc"] <= 1 and metrics["test/diversity"] > 0
