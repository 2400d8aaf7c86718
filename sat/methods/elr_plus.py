"""ELR+ (Liu, Niles-Weed, Razavian & Fernandez-Granda, NeurIPS 2020, the "+" of
"Early-Learning Regularization Prevents Memorization of Noisy Labels").

ELR (:mod:`sat.methods.elr`) with three additions, as the authors' ``ELR_plus`` code:

- two networks (the model and a peer), each with a *weight average*: a copy whose
  parameters follow ``ema <- a * ema + (1 - a) * w`` after every step, with
  ``a = ema_decay * sigmoid_rampup(k + 1, ema_rampup_steps)`` after optimizer step k
  (1, 2, ...), as the authors' ``update_ema_variables(..., global_step + local_step)``;
- each network's targets t (per sample) average the *other* network's weight-averaged
  predictions on the clean batch: ``t_i <- beta * t_i + (1 - beta) * p_other_ema(x_i)``;
- mixup of inputs and one-hot labels with ``lam' = max(lam, 1 - lam)``, lam ~ Beta(alpha, alpha),
  and the targets mixed alike: ``q = lam' t + (1 - lam') t[perm]``::

    loss = soft CE(f(x~), y~) + sigmoid_rampup(step, reg_rampup_steps) * lam * mean log(1 - <q, clamp(p)>)

Defaults: the authors' CIFAR-10 values (beta 0.7, lam 3, alpha 1, EMA 0.997 ramped over
40000 steps, no ramp of the regulariser); CIFAR-100: beta 0.9, lam 7, reg_rampup_steps
40000 (and the authors' CIFAR-100-only reweighting of the labels by q, not done here).
Both networks train in the same step with one optimizer (the authors alternate epochs);
the weight average of a step is taken at the start of the next one (the same sequence of
averages; the final step's weights are not averaged in); the evaluation scores the
model alone (the authors average both networks).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sat.config import validate
from sat.config.trust import trusted
from sat.methods.base import PeerMethod
from sat.methods.elr import PROB_CLAMP
from sat.methods.mixup import clean_logits, draw_lambda, mix, refuse_distributed, soft_cross_entropy
from sat.parallel.batch import GlobalBatch


def sigmoid_rampup(current: float, length: int) -> float:
    """``exp(-5 (1 - min(current, length) / length) ** 2)``; 1 for length 0 (Laine & Aila's ramp)."""
    if length == 0:
        return 1.0
    phase = 1.0 - min(max(current, 0.0), length) / length
    return math.exp(-5.0 * phase * phase)


@torch.no_grad()
def update_weight_average(average: nn.Module, network: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * network``, parameters only (the
    average's BatchNorm statistics come from its own forward passes, as the authors')."""
    for a, w in zip(average.parameters(), network.parameters()):
        a.mul_(decay).add_(w.detach(), alpha=1.0 - decay)


def elr_plus_loss(logits: torch.Tensor, mixed_labels: torch.Tensor, mixed_targets: torch.Tensor,
                  weight: float) -> torch.Tensor:
    """Soft CE on the mixed labels + ``weight * mean log(1 - <q, clamp(softmax)>)``."""
    p = logits.float().softmax(dim=1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    regulariser = torch.log(1.0 - (mixed_targets * p).sum(dim=1)).mean()
    return soft_cross_entropy(logits, mixed_labels) + weight * regulariser


@trusted("method")
class ELRPlus(PeerMethod):
    def __init__(self, beta: float = 0.7, lam: float = 3.0, alpha: float = 1.0, ema_decay: float = 0.997,
                 ema_rampup_steps: int = 40000, reg_rampup_steps: int = 0):
        super().__init__()
        self.beta = validate.number("beta", beta, lo=0.0, hi=1.0, hi_open=True)
        self.lam = validate.number("lam", lam, lo=0.0)
        self.alpha = validate.number("alpha", alpha, lo=0.0)
        self.ema_decay = validate.number("ema_decay", ema_decay, lo=0.0, hi=1.0)
        self.ema_rampup_steps = validate.number("ema_rampup_steps", ema_rampup_steps, lo=0, integer=True)
        self.reg_rampup_steps = validate.number("reg_rampup_steps", reg_rampup_steps, lo=0, integer=True)
        self.model_average: nn.Module | None = None
        self.peer_average: nn.Module | None = None
        # per sample: the model's targets (from the peer's average), the peer's (from the model's)
        self.register_buffer("targets", torch.empty(2, 0, 0), persistent=True)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long), persistent=True)
        self._host_steps: int | None = None  # the step count as a host int (no sync per step)

    def attach_model(self, build: Callable[[], nn.Module]) -> None:
        super().attach_model(build)
        self.model_average, self.peer_average = build(), build()
        for average in (self.model_average, self.peer_average):
            average.requires_grad_(False)

    def use_global_batch(self, batch: GlobalBatch) -> None:
        refuse_distributed(batch, "elr_plus")
        super().use_global_batch(batch)

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        # zeros, as ELR's targets start
        self.targets = torch.zeros(2, len(labels), num_classes, device=labels.device)

    def soft_labels(self) -> torch.Tensor:
        return self.targets[0]

    def average_decay(self, step: int) -> float:
        """The weight average's ``a`` after optimizer step ``step`` (1, 2, ...): the authors'
        ``ema_alpha * sigmoid_rampup(step + 1, ema_step)`` (ELR_plus/trainer/trainer.py, whose
        step count is already ``step`` when it averages)."""
        return self.ema_decay * sigmoid_rampup(step + 1, self.ema_rampup_steps)

    def _average_weights(self, model: nn.Module) -> None:
        """The weight averages after the previous step (a copy of the networks before the first)."""
        if self._host_steps is None:
            self._host_steps = int(self.steps)
        step = self._host_steps  # optimizer steps taken: this averages in the weights after step ``step``
        for average, network in ((self.model_average, model), (self.peer_average, self.peer)):
            if step == 0:
                average.load_state_dict(network.state_dict())
            else:
                update_weight_average(average, network, self.average_decay(step))

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._host_steps = None  # re-read from the loaded buffer

    def forward(self, model, x, y, index, epoch):
        if self.peer is None:
            raise RuntimeError("ELRPlus has no peer network: call method.attach_model(build) before training")
        x = x[0] if isinstance(x, (tuple, list)) else x  # one view
        self.peer.train(model.training)
        self._average_weights(model)
        step = self._host_steps
        lam = draw_lambda(self.alpha, symmetric_max=True)
        perm = torch.randperm(len(y), device=y.device)
        mixed_x = mix(x, lam, perm)
        mixed_labels = mix(F.one_hot(y, self.targets.shape[2]).float(), lam, perm)
        weight = self.lam * sigmoid_rampup(step + 1, self.reg_rampup_steps)
        total = 0.0
        for row, (network, other_average) in enumerate(((model, self.peer_average), (self.peer, self.model_average))):
            other_average.train(model.training)
            with torch.no_grad():
                p = other_average(x).float().softmax(dim=1)
            t = self.beta * self.targets[row, index] + (1.0 - self.beta) * p / p.sum(dim=1, keepdim=True)
            self.targets[row, index] = t
            total = total + elr_plus_loss(network(mixed_x), mixed_labels, mix(t, lam, perm), weight)
        self._host_steps = step + 1
        self.steps.fill_(step + 1)
        return total, clean_logits(model, x)

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        raise TypeError("ELR+'s loss needs both networks and their weight averages: use forward(model, ...)")

    def hparams(self):
        return {"beta": self.beta, "lam": self.lam, "alpha": self.alpha, "ema_decay": self.ema_decay,
                "ema_rampup_steps": self.ema_rampup_steps, "reg_rampup_steps": self.reg_rampup_steps}
