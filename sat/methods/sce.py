"""Symmetric cross-entropy (Wang et al., ICCV 2019, "Symmetric Cross Entropy for Robust
Learning with Noisy Labels")::

    loss = alpha * CE + beta * RCE,    RCE_i = -sum_k p_ik log y_ik

with y the one-hot given label and log 0 := A (the paper's A = -4), so that
RCE_i = -A * (1 - p_{i,y_i}), a scaled mean absolute error.

Paper defaults: CIFAR-10 alpha 0.1, beta 1.0; CIFAR-100 alpha 6.0, beta 0.1.
The authors' code (and the PyTorch reproduction) instead clamps the one-hot label at
1e-4, i.e. A = log(1e-4) ~= -9.21: set ``log_zero=-9.2103`` to match it (the
reproduction's README also uses beta 1.0 on CIFAR-100).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.config import validate
from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.base import Method


@trusted("method")
class SymmetricCrossEntropy(Method):
    def __init__(self, alpha: float = 0.1, beta: float = 1.0, log_zero: float = -4.0):
        super().__init__()
        alpha, beta = validate.number("alpha", alpha, lo=0.0), validate.number("beta", beta, lo=0.0)
        if alpha + beta == 0:
            raise UserError(key="beta", value=beta, problem="with {.alpha}=0 weighs both losses 0",
                            accepted="{.alpha} > 0 or {key} > 0")
        if not log_zero < 0:
            raise UserError(key="log_zero", value=log_zero, problem="is out of range",
                            accepted="a negative number (the paper's A = -4)")
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        logits = logits.float()
        ce = F.cross_entropy(logits, targets)
        p = logits.softmax(dim=1)
        # -sum_k p_k log y_k: log y_y = 0 and log y_k = A elsewhere. Summing the other
        # classes' p (not 1 - p_y) keeps precision when p_y is close to 1.
        off_label = p.scatter(1, targets.view(-1, 1), 0.0).sum(dim=1)
        rce = -self.log_zero * off_label
        return self.alpha * ce + self.beta * rce.mean()

    def hparams(self):
        return {"alpha": self.alpha, "beta": self.beta, "log_zero": self.log_zero}
