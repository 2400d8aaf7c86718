"""SELC, self-ensemble label correction (Lu & He, IJCAI 2022), as a method of your own: one
file here and one YAML (``conf/method/selc.yaml``), nothing edited in sat.

Each training sample keeps a soft target ``t_i`` (one-hot of its given label at the start).
Before ``start_epoch`` (the paper's turning point T, where the network starts to fit the
noisy labels) the loss is plain cross-entropy; from then on, whenever sample ``i`` is in a
batch::

    t_i <- alpha * t_i + (1 - alpha) * softmax(logits_i)      (detached)
    loss = mean_i -sum_k t_ik log p_ik

What sat gives such a method for free: the targets are a buffer, so checkpoints carry them
and a stopped run resumes exactly; ``global_batch.gather`` keeps them identical on every
process of a DDP run; ``phase_starts`` lets ``debug=fast`` reach the corrected phase and
refuses a run that never does; ``soft_labels`` exports the refined labels and label errors;
``hparams`` reaches the end-of-run table and TensorBoard.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.config import validate
from sat.methods.base import Method


class SELC(Method):
    """``method=selc``: cross-entropy, then from ``start_epoch`` the self-ensembled targets."""

    later_phase = "SELC's label correction"  # a run that never gets there: "..., so SELC's label correction would never start"

    def __init__(self, alpha: float = 0.9, start_epoch: int = 40):
        super().__init__()
        self.alpha = validate.number("alpha", alpha, lo=0.0, hi=1.0, hi_open=True)
        self.start_epoch = validate.number("start_epoch", start_epoch, lo=0, integer=True)
        self.register_buffer("targets", torch.empty(0, 0))

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        self.targets = F.one_hot(labels.long(), num_classes).float()

    def phase_starts(self) -> dict[str, int]:
        return {"start_epoch": self.start_epoch}

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        if epoch < self.start_epoch:
            return F.cross_entropy(logits.float(), targets)
        # the whole global batch's predictions (every process's, under DDP), so all keep the same targets
        index_all, prob = self.global_batch.gather(index, logits.detach().float().softmax(dim=1))
        self.targets[index_all] = self.alpha * self.targets[index_all] + (1.0 - self.alpha) * prob
        t = self.targets[index]  # this process's samples
        return -(t * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()

    def soft_labels(self) -> torch.Tensor:
        return self.targets

    def hparams(self) -> dict[str, float | int]:
        return {"alpha": self.alpha, "start_epoch": self.start_epoch}
