"""The coupled recognition/generation pair, its objectives and the LightningModule that trains them."""

from .compat import check_compatible
from .errors import CheckpointError, ConfigError
from .learner import GenerativeLearner
from .model import CoupledSigmoidNet, fixed_binarize
from .objectives import OBJECTIVES
from .optim import make_optimizer

__all__ = ["CheckpointError", "ConfigError", "CoupledSigmoidNet", "GenerativeLearner", "OBJECTIVES",
           "check_compatible", "fixed_binarize", "make_optimizer"]
