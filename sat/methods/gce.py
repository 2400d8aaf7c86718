"""Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018, "Generalized Cross Entropy
Loss for Training Deep Neural Networks with Noisy Labels")::

    loss = mean_i (1 - p_{i,y_i} ** q) / q

``q -> 0`` recovers cross-entropy, ``q = 1`` is the (noise-robust) mean absolute error;
the paper's default is 0.7. This is the plain L_q loss, without the paper's truncation
and sample pruning (the "truncated L_q" variant).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.base import Method


@trusted("method")
class GeneralizedCrossEntropy(Method):
    def __init__(self, q: float = 0.7):
        super().__init__()
        if not 0.0 < q <= 1.0:
            raise UserError(key="q", value=q, problem="is out of range", accepted="0 < {key} <= 1")
        self.q = q

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        log_p_y = F.log_softmax(logits.float(), dim=1).gather(1, targets.view(-1, 1)).squeeze(1)
        # p ** q as exp(q log p): finite gradient even where p underflows to 0.
        return ((1.0 - torch.exp(self.q * log_p_y)) / self.q).mean()

    def hparams(self):
        return {"q": self.q}
