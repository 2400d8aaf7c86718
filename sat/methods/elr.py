"""Early-learning regularisation (Liu et al., NeurIPS 2020, "Early-Learning
Regularization Prevents Memorization of Noisy Labels").

Each training sample keeps a target t_i, a running average of the model's predictions.
Each time sample i is in a batch::

    p_i  = clamp(softmax(logits_i), 1e-4, 1 - 1e-4)
    t_i <- beta * t_i + (1 - beta) * p_i / sum_k p_ik        (detached)
    loss = CE(logits, y) + lam * mean_i log(1 - <t_i, p_i>)

Details as in the authors' code (github.com/shengliu66/ELR, ``ELR/model/loss.py``):
t starts at zero (not at the one-hot label); the clamp is applied to p before both
uses, so the regulariser has no gradient for probabilities outside [1e-4, 1 - 1e-4];
the EMA uses the clamped p renormalised to sum to one, the regulariser the clamped p
as it is; t is updated before the loss, so the batch's own prediction is in it; the
cross-entropy is on the raw logits. Defaults: CIFAR-10 beta 0.7, lam 3; CIFAR-100
beta 0.9, lam 7.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.base import Method

PROB_CLAMP = 1e-4


@trusted("method")
class EarlyLearningRegularization(Method):
    def __init__(self, beta: float = 0.7, lam: float = 3.0):
        super().__init__()
        if not 0.0 <= beta < 1.0:
            raise UserError(key="beta", value=beta, problem="is out of range", accepted="0 <= {key} < 1")
        if lam < 0:
            raise UserError(key="lam", value=lam, problem="is out of range",
                            accepted="{key} >= 0 (the regulariser's weight)")
        self.beta, self.lam = beta, lam
        self.register_buffer("targets", torch.empty(0, 0), persistent=True)

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        self.targets = torch.zeros(len(labels), num_classes, device=labels.device)

    def soft_labels(self) -> torch.Tensor:
        return self.targets

    def _update_targets(self, p: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Update the targets of the global batch's samples (under DDP: all processes'
        shards, gathered, so every process keeps the same targets); returns this
        process's rows."""
        index, p = self.global_batch.gather(index, p)
        t = self.beta * self.targets[index] + (1.0 - self.beta) * (p / p.sum(dim=1, keepdim=True))
        self.targets[index] = t
        return self.global_batch.local(t)

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        logits = logits.float()
        p = logits.softmax(dim=1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
        t = self._update_targets(p, index)
        regulariser = torch.log(1.0 - (t * p).sum(dim=1)).mean()
        return F.cross_entropy(logits, targets) + self.lam * regulariser

    def hparams(self):
        return {"beta": self.beta, "lam": self.lam}
