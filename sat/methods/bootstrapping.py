"""Bootstrapping (Reed et al., ICLR 2015 workshop, "Training Deep Neural Networks on Noisy
Labels with Bootstrapping"): cross-entropy against a mix of the given label y and the
model's own belief::

    soft:  loss = mean_i -sum_k (beta * y_ik + (1 - beta) * p_ik) log p_ik,   beta 0.95
    hard:  loss = mean_i -sum_k (beta * y_ik + (1 - beta) * z_ik) log p_ik,   beta 0.8

with z_i = one-hot(argmax_k p_ik). In the soft version the gradient flows through the p
in the target too: the paper notes this makes it cross-entropy plus minimum-entropy
regularisation, ``beta * CE + (1 - beta) * H(p)``. (Detaching p would turn it into a
pseudo-label method, which some re-implementations do; the paper's objective is this.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.base import Method


class _Bootstrapping(Method):
    def __init__(self, beta: float):
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise UserError(key="beta", value=beta, problem="is out of range", accepted="0 <= {key} <= 1")
        self.beta = beta

    def hparams(self):
        return {"beta": self.beta}


@trusted("method")
class SoftBootstrapping(_Bootstrapping):
    def __init__(self, beta: float = 0.95):
        super().__init__(beta)

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        ce = F.nll_loss(log_p, targets)
        entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
        return self.beta * ce + (1.0 - self.beta) * entropy


@trusted("method")
class HardBootstrapping(_Bootstrapping):
    def __init__(self, beta: float = 0.8):
        super().__init__(beta)

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        predicted = log_p.detach().argmax(dim=1)
        return self.beta * F.nll_loss(log_p, targets) + (1.0 - self.beta) * F.nll_loss(log_p, predicted)
