"""The coupled recognition/generation pair, its objectives and the LightningModule that trains them."""

from .model import CoupledSigmoidNet, fixed_binarize
from .objectives import OBJECTIVES

__all__ = ["CoupledSigmoidNet", "OBJECTIVES", "fixed_binarize"]
