"""Plain cross-entropy (empirical risk minimisation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.errors import UserError
from sat.methods.base import Method


class CrossEntropy(Method):
    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise UserError(f"method.label_smoothing={label_smoothing} is out of range; accepted: 0 <= value < 1")
        self.label_smoothing = label_smoothing

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def hparams(self):
        return {"label_smoothing": self.label_smoothing}
