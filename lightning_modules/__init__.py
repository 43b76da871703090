"""The coupled recognition/generation pair, its objectives and the LightningModule that trains them."""

from .errors import CheckpointError, ConfigError
from .learner import GenerativeLearner, check_compatible, make_optimizer
from .model import CoupledSigmoidNet, fixed_binarize
from .objectives import OBJECTIVES

__all__ = ["CheckpointError", "ConfigError", "CoupledSigmoidNet", "GenerativeLearner", "OBJECTIVES",
           "check_compatible", "fixed_binarize", "make_optimizer"]
