"""The coupled recognition/generation pair, its objectives and the LightningModule that trains them."""

from .errors import ConfigError
from .learner import GenerativeLearner
from .model import CoupledSigmoidNet, fixed_binarize
from .objectives import OBJECTIVES

__all__ = ["CoupledSigmoidNet", "ConfigError", "GenerativeLearner", "OBJECTIVES", "fixed_binarize"]
