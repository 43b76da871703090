"""The paper's benchmarks: MNIST and Fashion-MNIST from the hub (or their local mirror)."""

from __future__ import annotations

from typing import Any

from datamodules.hf_image import HFImageDataModule


class MNISTDataModule(HFImageDataModule):
    """MNIST (``ylecun/mnist``): 28x28 grey, 10 classes; 55000/5000/10000 with the default ``val_size``.

    Takes every argument of :class:`HFImageDataModule` but ``name`` (LightningCLI reads them through the
    ``**kwargs`` forwarded to ``super().__init__``).
    """

    def __init__(self, **kwargs: Any):
        super().__init__(name="ylecun/mnist", **kwargs)


class FashionMNISTDataModule(HFImageDataModule):
    """Fashion-MNIST (``zalando-datasets/fashion_mnist``): 28x28 grey, 10 classes; takes the same arguments."""

    def __init__(self, **kwargs: Any):
        super().__init__(name="zalando-datasets/fashion_mnist", **kwargs)
