"""Self-Adaptive Training (Huang, Zhang & Zhang, NeurIPS 2020).

Each training sample keeps a soft target ``t_i``, initialised to the one-hot given
label. Before ``start_epoch`` the loss is plain cross-entropy. From then on, whenever
sample ``i`` is in a batch::

    t_i <- alpha * t_i + (1 - alpha) * softmax(logits_i)      (detached)
    w_i  = max_k t_ik, normalised so that the batch's weights sum to its size
    loss = mean_i w_i * sum_k -t_ik log p_ik
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.errors import UserError
from sat.methods.base import Method


def scale_for_width(alpha: float, start_epoch: int, width: int, reference_width: int = 64) -> tuple[float, int]:
    """The reference code's rescaling of SAT's hyper-parameters for a ResNet of base
    width ``width`` (the standard ResNet has 64): ``alpha ** (width / reference_width)``
    and ``int(start_epoch * reference_width / width)``. Narrow nets fit slowly, so they
    get a longer warm-up and a slower-moving target."""
    if width <= 0 or reference_width <= 0:
        raise UserError(f"width scaling needs positive widths, got width={width}, reference_width={reference_width}")
    return alpha ** (width / reference_width), int(start_epoch * reference_width / width)


class SelfAdaptiveTraining(Method):
    """SAT with the cross-entropy target loss.

    ``width_scaling=True`` applies :func:`scale_for_width` with the model's ``width``;
    the values actually used are ``self.alpha`` / ``self.start_epoch`` and are logged.
    """

    def __init__(
        self,
        alpha: float = 0.9,
        start_epoch: int = 60,
        width_scaling: bool = False,
        width: int | None = None,
        reference_width: int = 64,
    ):
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise UserError(f"method.alpha={alpha} is out of range; accepted: 0 <= alpha < 1")
        if start_epoch < 0:
            raise UserError(f"method.start_epoch={start_epoch} is out of range; accepted: an integer >= 0")
        self.base_alpha, self.base_start_epoch = alpha, start_epoch
        self.width_scaling = width_scaling
        if width_scaling:
            if width is None:
                raise UserError("method.width_scaling=true needs method.width (the model's width); got null")
            alpha, start_epoch = scale_for_width(alpha, start_epoch, width, reference_width)
        self.alpha, self.start_epoch = alpha, start_epoch
        self.register_buffer("targets", torch.empty(0, 0), persistent=True)

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        self.targets = F.one_hot(labels.long(), num_classes).float()

    def soft_labels(self) -> torch.Tensor:
        return self.targets

    def _update_targets(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        prob = logits.detach().float().softmax(dim=1)
        t = self.alpha * self.targets[index] + (1.0 - self.alpha) * prob
        self.targets[index] = t
        return t

    @staticmethod
    def _weights(t: torch.Tensor) -> torch.Tensor:
        w = t.max(dim=1).values
        return w * (t.shape[0] / w.sum())

    def target_loss(self, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Per-sample loss against soft targets ``t``."""
        return -(t * F.log_softmax(logits.float(), dim=1)).sum(dim=1)

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        if epoch < self.start_epoch:
            return F.cross_entropy(logits.float(), targets)
        t = self._update_targets(logits, index)
        return (self._weights(t) * self.target_loss(logits, t)).mean()

    def hparams(self):
        return {
            "alpha": self.alpha,
            "start_epoch": self.start_epoch,
            "width_scaling": self.width_scaling,
            "base_alpha": self.base_alpha,
            "base_start_epoch": self.base_start_epoch,
        }


class SelfAdaptiveTrainingSCE(SelfAdaptiveTraining):
    """SAT with the symmetric cross-entropy target loss:
    ``-ce_weight * sum t log p - rce_weight * sum p log t``, the log arguments clamped
    away from zero (p >= 1e-7, t >= 1e-4, as in the reference code)."""

    def __init__(self, alpha: float = 0.9, start_epoch: int = 60, ce_weight: float = 1.0, rce_weight: float = 0.3, **kwargs):
        super().__init__(alpha, start_epoch, **kwargs)
        self.ce_weight, self.rce_weight = ce_weight, rce_weight

    def target_loss(self, logits, t):
        ce = super().target_loss(logits, t)
        p = logits.float().softmax(dim=1).clamp(min=1e-7, max=1.0)
        rce = -(p * t.clamp(min=1e-4, max=1.0).log()).sum(dim=1)
        return self.ce_weight * ce + self.rce_weight * rce

    def hparams(self):
        return {**super().hparams(), "ce_weight": self.ce_weight, "rce_weight": self.rce_weight}
