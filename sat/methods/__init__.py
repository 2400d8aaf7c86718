"""Training methods: losses with (optional) per-sample state."""

from sat.methods.base import Method
from sat.methods.ce import CrossEntropy
from sat.methods.sat import SelfAdaptiveTraining, SelfAdaptiveTrainingSCE, scale_for_width
from sat.methods.trades import TRADES

__all__ = ["Method", "CrossEntropy", "SelfAdaptiveTraining", "SelfAdaptiveTrainingSCE", "scale_for_width", "TRADES"]
