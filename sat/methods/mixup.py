"""mixup (Zhang, Cisse, Dauphin & Lopez-Paz, ICLR 2018, "mixup: Beyond Empirical Risk
Minimization"), as a baseline and as the ingredient of ELR+ and DivideMix.

Each batch is mixed with a permutation of itself::

    lam ~ Beta(alpha, alpha),  x~ = lam * x + (1 - lam) * x[perm]
    loss = lam * CE(f(x~), y) + (1 - lam) * CE(f(x~), y[perm])

one ``lam`` per batch, as the authors' CIFAR code; their CIFAR-10 default alpha is 1.
The mixing functions take ``lam`` and ``perm`` as arguments, so the methods built on
them are testable by hand; the draws come from PyTorch's global generators (their
states are in checkpoints, so a resumed run draws the same).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat.config import validate
from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.base import Method
from sat.parallel.batch import GlobalBatch


def draw_lambda(alpha: float, symmetric_max: bool = False) -> float:
    """One ``lam ~ Beta(alpha, alpha)`` (1.0 for alpha 0: no mixing); with
    ``symmetric_max``, ``max(lam, 1 - lam)`` (MixMatch, ELR+: the mix stays closer to the
    first sample)."""
    if alpha == 0:
        return 1.0
    concentration = torch.tensor(float(alpha))
    lam = float(torch.distributions.Beta(concentration, concentration).sample())
    return max(lam, 1.0 - lam) if symmetric_max else lam


def mix(values: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``lam * values + (1 - lam) * values[perm]`` (inputs, or soft targets)."""
    return lam * values + (1.0 - lam) * values[perm]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_i -sum_k targets_ik log softmax(logits)_ik`` for soft targets."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def refuse_distributed(batch: GlobalBatch, name: str) -> None:
    """Methods that mix samples across the batch: under DDP each process would mix only
    within its shard, which is not what one process computes."""
    if batch.world_size > 1:
        raise UserError(f"method={name} is not supported under DDP (world size {batch.world_size}): its mixup pairs "
                        "samples across the whole batch, and a process holds only its shard; run it in one process")


def clean_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's logits on the unmixed batch for the epoch's statistics, without a
    gradient and in eval mode (so BatchNorm's statistics see only the training pass)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x)
    finally:
        model.train(was_training)


@trusted("method")
class Mixup(Method):
    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = validate.number("alpha", alpha, lo=0.0)

    def use_global_batch(self, batch: GlobalBatch) -> None:
        refuse_distributed(batch, "mixup")
        super().use_global_batch(batch)

    def mixed_loss(self, logits: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` on a batch mixed with ``lam`` and ``perm``."""
        logits = logits.float()
        return lam * F.cross_entropy(logits, y) + (1.0 - lam) * F.cross_entropy(logits, y[perm])

    def forward(self, model, x, y, index, epoch):
        lam = draw_lambda(self.alpha)
        perm = torch.randperm(len(y), device=y.device)
        loss = self.mixed_loss(model(mix(x, lam, perm)), y, lam, perm)
        return loss, clean_logits(model, x)

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        raise TypeError("mixup's loss is on mixed inputs: use forward(model, ...) or mixed_loss")

    def hparams(self):
        return {"alpha": self.alpha}
