"""Plain cross-entropy (empirical risk minimisation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.config import validate
from sat.config.trust import trusted
from sat.methods.base import Method


@trusted("method", "sat.methods.CrossEntropy")
class CrossEntropy(Method):
    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = validate.number("label_smoothing", label_smoothing, lo=0.0, hi=1.0, hi_open=True)

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def hparams(self):
        return {"label_smoothing": self.label_smoothing}
