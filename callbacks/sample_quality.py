"""Sample quality and approximate-inference quality of a trained coupled pair (METHOD.md, evaluation).

- sample accuracy: an independently trained classifier labels `per_class` ancestral samples per class;
- diversity: mean pairwise distance between a class's samples over that between its real test images
  (1 = as varied as the data, 0 = one image repeated);
- approximation error: per hidden layer, mean |deterministic - Monte Carlo| and |mean_variance - MC|.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from lightning_modules.errors import ConfigError
from lightning_modules.model import CoupledSigmoidNet
from lightning_modules.seeds import stream_generator


@torch.no_grad()
def class_samples(
    net: CoupledSigmoidNet, per_class: int, seed: int = 0, chunk: int = 4096, kind: str = "binary"
) -> tuple[Tensor, Tensor]:
    """`per_class` ancestral samples for every class, in class order: (x (C*per_class, d0), y).

    kind: ``binary`` (sampled pixels) or ``means`` (the pixel means p(x0 = 1 | x1) of the same draws).
    """
    device = net.W[0].device
    g = stream_generator(seed, "sample_quality", device=device)
    y = torch.arange(net.num_classes, device=device).repeat_interleave(per_class)
    return torch.cat([net.sample_images(part, kind, g) for part in y.split(chunk)]), y


@torch.no_grad()
def sample_accuracy(samples: Tensor, labels: Tensor, classifier: torch.nn.Module, chunk: int = 2048) -> float:
    dtype = next((p.dtype for p in classifier.parameters()), samples.dtype)  # the classifier's, not the pair's
    preds = torch.cat([classifier(s.to(dtype)).argmax(-1) for s in samples.split(chunk)])
    return (preds == labels).float().mean().item()


def mean_pairwise_distance(x: Tensor) -> Tensor:
    n = x.shape[0]
    return torch.cdist(x, x).sum() / max(1, n * (n - 1))


@torch.no_grad()
def diversity(samples: Tensor, labels: Tensor, real: Tensor, real_labels: Tensor, max_per_class: int = 1000) -> float:
    """Mean over classes of (pairwise distance of samples) / (pairwise distance of real images)."""
    ratios = []
    for k in labels.unique():
        s = samples[labels == k][:max_per_class].float()
        r = real[real_labels == k][:max_per_class].float()
        if len(s) > 1 and len(r) > 1:
            ratios.append((mean_pairwise_distance(s) / mean_pairwise_distance(r)).item())
    return sum(ratios) / len(ratios)


@torch.no_grad()
def approximation_error(net: CoupledSigmoidNet, x: Tensor, num_samples: int = 1000, seed: int = 0) -> dict:
    """{method: [per-hidden-layer mean absolute error vs Monte Carlo marginals]} for the recognition pass."""
    g = stream_generator(seed, "approx_error", device=x.device)
    mc = net.marginals(x, "monte_carlo", num_samples=num_samples, generator=g)[:-1]
    return {
        m: [(a - b).abs().mean().item() for a, b in zip(net.marginals(x, m)[:-1], mc)]
        for m in ("deterministic", "mean_variance")
    }


class SampleQuality(pl.Callback):
    """At test end, logs test/sample_acc (binary samples), test/sample_acc_means (their pixel means
    p(x0 = 1 | x1)), test/diversity and test/approx_error/<method>/layer<k>.

    Every rank computes the same numbers from the same seeds (they are cheap next to the test set's
    likelihoods), so nothing needs syncing and the values do not depend on the number of processes.
    """

    def __init__(self, classifier_ckpt: str | None = None, per_class: int = 1000, marginal_images: int = 500,
                 mc_samples: int = 1000, seed: int = 0):
        if per_class < 1 or marginal_images < 0 or mc_samples < 1:
            raise ConfigError(f"sample_quality needs per_class >= 1, marginal_images >= 0 and mc_samples >= 1; "
                              f"got {per_class}, {marginal_images}, {mc_samples}")
        self.classifier_ckpt = classifier_ckpt
        self.per_class, self.marginal_images, self.mc_samples, self.seed = per_class, marginal_images, mc_samples, seed
        self.results: dict = {}

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net: CoupledSigmoidNet = pl_module.net
        dm = trainer.datamodule
        if not hasattr(dm, "split_tensors"):  # diversity and the marginals compare with the real test images
            rank_zero_warn("sample_quality needs a DataModule with split_tensors('test'); nothing is measured")
            return
        real, real_y = dm.split_tensors("test")
        real = dm.transform(real.to(pl_module.device), train=False).to(net.W[0].dtype)  # 64-true, bf16-true
        real_y = real_y.to(pl_module.device)
        samples, labels = class_samples(net, self.per_class, self.seed)
        res = {"diversity": diversity(samples, labels, real, real_y)}
        if self.classifier_ckpt:
            from lightning_modules.reference import ReferenceCNN

            clf = ReferenceCNN.for_scoring(self.classifier_ckpt, map_location=pl_module.device)
            res["sample_acc"] = sample_accuracy(samples, labels, clf)
            means, labels = class_samples(net, self.per_class, self.seed, kind="means")  # the same draws' means
            res["sample_acc_means"] = sample_accuracy(means, labels, clf)
        if self.marginal_images:
            err = approximation_error(net, real[: self.marginal_images], self.mc_samples, self.seed)
            for method, layers in err.items():
                res.update({f"approx_error/{method}/layer{k + 1}": v for k, v in enumerate(layers)})
        self.results = res
        for k, v in res.items():
            pl_module.log(f"test/{k}", v, rank_zero_only=True)
