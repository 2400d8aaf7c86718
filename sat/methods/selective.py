"""Selective classification: models with K + 1 outputs, the last one meaning "abstain".

Two training objectives, both as in the authors' released code (SAT-selective-cls,
which also carries the Deep Gamblers baseline):

* :class:`SelfAdaptiveSelective` (``method=sat_selective``, Huang et al.): each training
  sample keeps soft class targets ``t_i`` (K classes), one-hot at the start and, after
  the warm-up, ``t_i <- m * t_i + (1 - m) * softmax(first K logits)`` (detached). The
  K + 1 target puts ``t_i[y]`` on the given label and ``1 - t_i[y]`` on abstain; the loss
  is cross-entropy over all K + 1 outputs. A sample the model keeps disagreeing with
  (a wrong label, an ambiguous image) moves its target mass to "abstain".
* :class:`DeepGamblers` (``method=gambler``, Liu et al. 2019): with reward ``o``,
  ``loss = -log(p_y + p_abstain / o)``, softmax over K + 1 outputs.

Both start with ``pretrain`` epochs of plain cross-entropy on the first K outputs (the
abstain output gets no gradient then), as the reference does for either loss.

The model must be built with ``num_classes + extra_outputs`` outputs. The logits these
methods hand back to the training loop are the first K only, so training accuracy
counts class predictions (prediction = argmax over the K classes, never "abstain").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sat.config import validate
from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.base import Method


def _check_pretrain(pretrain: int) -> int:
    return validate.number("pretrain", pretrain, lo=0, integer=True)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Losses in float32 under bf16 autocast; float64 inputs stay float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _split_abstain(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The first K logits, after checking the model has K + 1 outputs."""
    if logits.dim() != 2 or logits.shape[1] != num_classes + 1:
        raise ValueError(
            f"a selective method needs logits of shape (batch, {num_classes + 1}) (num_classes + extra_outputs), "
            f"got {tuple(logits.shape)}; build the model with num_classes + method.extra_outputs outputs"
        )
    return logits[:, :num_classes]


def abstain_targets(class_targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The K + 1 target of each sample: ``t[y]`` on its label, ``1 - t[y]`` on abstain
    (the last column), 0 elsewhere.

    The reference then L1-normalises the rows; they already sum to 1, so that is a
    no-op and is left out.
    """
    n, k = class_targets.shape
    rows = torch.arange(n, device=labels.device)
    on_label = class_targets[rows, labels]
    target = class_targets.new_zeros(n, k + 1)
    target[rows, labels] = on_label
    target[:, k] = 1.0 - on_label
    return target


def gambler_loss(logits: torch.Tensor, labels: torch.Tensor, reward: float) -> torch.Tensor:
    """Mean over the batch of ``-log(p_y + p_abstain / reward)``, softmax over K + 1
    outputs (the last is abstain).

    Computed in log space (``logsumexp(log p_y, log p_abstain - log reward)``): the same
    value as the reference's ``log(p_y + p_abstain / o)``, without ``log(0)`` when both
    probabilities underflow.
    """
    logp = F.log_softmax(_at_least_fp32(logits), dim=1)
    log_gain = logp.gather(1, labels.long()[:, None]).squeeze(1)
    log_reserve = logp[:, -1] - math.log(reward)
    return -torch.logaddexp(log_gain, log_reserve).mean()


class _AbstainingMethod(Method):
    """What both abstention methods share: K + 1 outputs, a plain-CE warm-up on the first
    K, and class logits handed back to the training loop."""

    extra_outputs = 1  # the training code builds the model with num_classes + extra_outputs outputs

    def __init__(self, pretrain: int) -> None:
        super().__init__()
        self.pretrain = _check_pretrain(pretrain)
        self.num_classes = 0  # K, known at setup

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        self.num_classes = int(num_classes)

    later_phase = "the abstention loss"

    def phase_starts(self) -> dict[str, int]:
        return {"pretrain": self.pretrain}

    def abstain_loss(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        class_logits = _split_abstain(logits, self.num_classes)
        if epoch < self.pretrain:
            # The reference's warm-up is CE over the first K outputs only (outputs[:, :-1]).
            return F.cross_entropy(_at_least_fp32(class_logits), targets)
        return self.abstain_loss(logits, targets, index)

    def forward(self, model: nn.Module, x, y, index, epoch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return self.loss(logits, y, index, epoch), logits[:, : self.num_classes]


@trusted("method")
class SelfAdaptiveSelective(_AbstainingMethod):
    """SAT for selective classification (``method=sat_selective``).

    ``momentum`` is the reference's ``--sat-momentum`` (0.9); ``pretrain`` its warm-up
    epochs (150 in the released CIFAR-10 script, 0 in the SVHN one). The soft targets
    are a per-sample buffer indexed by dataset index, so checkpoints carry them.
    """

    def __init__(self, momentum: float = 0.9, pretrain: int = 150) -> None:
        super().__init__(pretrain)
        self.momentum = validate.number("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
        self.register_buffer("targets", torch.empty(0, 0), persistent=True)

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        super().setup(labels, num_classes)
        # The reference starts each row lazily from one-hot(y) at its first update: the same thing.
        self.targets = F.one_hot(labels.long(), num_classes).float()

    def soft_labels(self) -> torch.Tensor:
        return self.targets

    def _update_targets(self, class_logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        prob = _at_least_fp32(class_logits.detach()).softmax(dim=1)
        # over the global batch (under DDP: every process's shard), so all keep the same targets
        index, prob = self.global_batch.gather(index, prob)
        t = self.momentum * self.targets[index] + (1.0 - self.momentum) * prob
        self.targets[index] = t
        return self.global_batch.local(t)

    def abstain_loss(self, logits, labels, index) -> torch.Tensor:
        t = self._update_targets(logits[:, : self.num_classes], index)
        target = abstain_targets(t, labels)
        # Unweighted mean over the batch, as in the reference (no SAT sample weights here).
        return -(target * F.log_softmax(_at_least_fp32(logits), dim=1)).sum(dim=1).mean()

    def hparams(self):
        return {"momentum": self.momentum, "pretrain": self.pretrain, "extra_outputs": self.extra_outputs}


@trusted("method")
class DeepGamblers(_AbstainingMethod):
    """The Deep Gamblers loss (``method=gambler``) with reward ``o``, ``1 < o <= K``.

    At ``o <= 1`` abstaining always pays more than betting; above K, betting uniformly
    always pays more than abstaining, so the abstain output would learn nothing.
    """

    def __init__(self, reward: float = 2.2, pretrain: int = 0) -> None:
        super().__init__(pretrain)
        self.reward = validate.number("reward", reward, lo=1.0, lo_open=True)

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        if self.reward > num_classes:
            raise UserError(key="reward", value=self.reward, problem=f"is out of range for {num_classes} classes",
                            accepted=f"1 < {{key}} <= {num_classes}")
        super().setup(labels, num_classes)

    def abstain_loss(self, logits, labels, index) -> torch.Tensor:
        return gambler_loss(logits, labels, self.reward)

    def hparams(self):
        return {"reward": self.reward, "pretrain": self.pretrain, "extra_outputs": self.extra_outputs}
