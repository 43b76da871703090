"""scripts/sample_layers.py: the class kept by ancestral samples at each layer."""

from __future__ import annotations

import torch

from lightning_modules.model import CoupledSigmoidNet
from scripts.sample_layers import layer_consistency, posterior_top_consistency, top_spread


def _net(scale: float, sizes=(2, 2, 2), tied=True) -> CoupledSigmoidNet:
    """Every W = scale * (+1 on the diagonal, -1 off it), zero biases: at a large scale each layer copies the
    class down (generation) and up (recognition); at 0 every state is a fair coin."""
    net = CoupledSigmoidNet(list(sizes), tied=tied)
    with torch.no_grad():
        for k in range(net.num_layers):
            net.W[k].copy_(scale * (2 * torch.eye(2) - 1))
            if not tied:
                net.V[k].copy_(net.W[k])
            net.b[k].zero_()
            net.c[k].zero_()
    return net


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-pixel "images" of two classes: class c lights pixel c."""
    y = torch.arange(2).repeat(n)
    return torch.eye(2)[y], y


def test_a_net_that_copies_the_class_keeps_it_at_every_layer():
    assert layer_consistency(_net(20.0), per_class=200) == [1.0, 1.0]  # from x0 and from x1
    mean, spread = top_spread(_net(20.0))
    assert abs(mean - 0.5) < 1e-6 and abs(spread - 0.5) < 1e-6  # p(top|y) is one-hot per class


def test_a_net_without_weights_keeps_no_class():
    accs = layer_consistency(_net(0.0), per_class=2000)
    assert len(accs) == 2 and all(abs(a - 0.5) < 0.05 for a in accs)  # chance, from x0 and from x1
    assert top_spread(_net(0.0)) == (0.5, 0.0)


def test_the_walk_down_from_q_keeps_the_class_where_the_copying_layers_do():
    x, y = _images(200)
    assert posterior_top_consistency(_net(20.0), x, y) == [1.0]  # [2, 2, 2]: from x0 only
    accs = posterior_top_consistency(_net(0.0), *_images(2000))
    assert len(accs) == 1 and abs(accs[0] - 0.5) < 0.05


def test_a_blind_prior_loses_the_class_that_the_walk_from_q_keeps():
    """Untied [2, 2, 2, 2]: every layer copies, except that p(x2 | y) is a fair coin (its V is 0). Samples from
    the prior keep no class; walks down from q's top state of real images keep all of it."""
    net = _net(20.0, sizes=(2, 2, 2, 2), tied=False)
    with torch.no_grad():
        net.V[2].zero_()
    prior = layer_consistency(net, per_class=2000)
    assert len(prior) == 3 and all(abs(a - 0.5) < 0.05 for a in prior), prior  # from x0, x1 and x2: chance
    x, y = _images(500)
    assert posterior_top_consistency(net, x, y) == [1.0, 1.0]


def test_pass_accuracies_score_both_passes_on_the_images():
    """The copying net recognises its two-pixel images by either pass; a net of zero weights guesses one class."""
    from scripts.sample_layers import pass_accuracies

    x, y = _images(50)
    assert pass_accuracies(_net(20.0), x, y) == [1.0, 1.0]
    assert pass_accuracies(_net(0.0), x, y) == [0.5, 0.5]  # argmax of equal logits: class 0, half the images


def test_main_scores_the_samples_by_the_reference_cnn(tiny_data, decoded_cache, tmp_path, capsys):
    """`--reference` adds the reference CNN's accuracy on the test's own binary samples (same seed, per class)."""
    import pytorch_lightning as pl

    from callbacks.sample_quality import class_samples, sample_accuracy
    from coupled import load
    from datamodules import HFImageDataModule
    from lightning_modules import GenerativeLearner
    from lightning_modules.reference import ReferenceCNN
    from scripts.sample_layers import main

    pl.seed_everything(0)
    dm = HFImageDataModule(data_dir=str(tiny_data), cache_dir=str(decoded_cache), batch_size=32, val_size=50)
    paths = {}
    for name, module in (("clf", ReferenceCNN(image_shape=dm.image_shape, num_classes=dm.num_classes, width=4)),
                         ("pair", GenerativeLearner(hidden_sizes=[8], input_dim=dm.input_dim,
                                                    num_classes=dm.num_classes, objective="rws"))):
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, datamodule=dm)
        paths[name] = tmp_path / f"{name}.ckpt"
        trainer.save_checkpoint(paths[name], weights_only=True)
    main([f"tiny={paths['pair']}", "--per-class", "30", "--data-dir", "", "--reference", str(paths["clf"])])
    row = capsys.readouterr().out.strip().splitlines()[-1].split(" | ")
    clf = ReferenceCNN.for_scoring(paths["clf"])
    expected = sample_accuracy(*class_samples(load(paths["pair"]).net, 30, 0), clf)
    assert row[0] == "| tiny" and row[3] == f"{expected:.1%}"  # model, from x0, from x1, reference CNN


def test_reference_ceiling_scores_grey_images_and_their_fixed_binarization():
    """A classifier that says class 1 where the first pixel is above 0.3: every image with that pixel at 0.4
    (labelled 1) passes grey, and binarized as the test set is it passes as often as the pixel comes up 1. The two
    other pixels only make the images distinct (the binarization hashes each image's content)."""
    from callbacks.sample_quality import sample_accuracy
    from lightning_modules.model import fixed_binarize
    from scripts.sample_layers import reference_ceiling

    clf = torch.nn.Linear(3, 2)
    with torch.no_grad():
        clf.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
        clf.bias.copy_(torch.tensor([0.0, -0.3]))
    i = torch.arange(4000)
    x = torch.stack([torch.full((4000,), 0.4), (i % 64) / 63, (i // 64) / 63], 1)
    y = torch.ones(4000, dtype=torch.long)
    grey, binary = reference_ceiling(clf, x, y, seed=3)
    assert grey == 1.0
    assert abs(binary - 0.4) < 0.03  # sd of the mean: sqrt(0.24 / 4000) = 0.008
    assert binary == sample_accuracy(fixed_binarize(x, 3), y, clf)  # the test set's own binarization
