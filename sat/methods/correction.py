"""Loss correction with a noise transition matrix (Patrini, Rozza, Menon, Nock & Qu,
CVPR 2017, "Making Deep Neural Networks Robust to Label Noise: a Loss Correction
Approach").

``T[i, j]`` is the chance that a sample of true class i carries the label j (rows sum to
one). With p = softmax(f(x)):

- forward:  ``loss = -log (T^T p)_y``                   (the model predicts clean classes)
- backward: ``loss = (T^-1 l)_y``, ``l_k = -log p_k``    (an unbiased estimate of the clean loss)

``T`` is given (``method.transition``), or estimated from the model as the paper's
estimator: after ``estimate_epoch`` epochs of plain cross-entropy, for each class i the
sample the model finds most likely to be of class i (among those below the class's
``percentile``-th percentile: the authors' outlier filter, 97 on CIFAR; 100 takes the
most confident sample) gives row i, ``T[i] = p(x_i)``. The paper trains a second model
from scratch with that T; here the same run goes on with it (a warm-started variant).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from sat.config import validate
from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.base import Method

ROW_SUM_TOLERANCE = 1e-6


def check_transition(matrix: Any, name: str = "transition") -> torch.Tensor:
    """``matrix`` as a float64 K x K row-stochastic tensor, else a one-line UserError."""
    accepted = "a K x K matrix of probabilities, rows summing to 1 (row i: the labels a sample of class i carries)"
    try:
        t = torch.as_tensor(matrix, dtype=torch.float64)
    except (TypeError, ValueError):
        raise UserError(key=name, value=matrix, problem="is not a matrix of numbers", accepted=accepted) from None
    if t.dim() != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 2:
        raise UserError(key=name, problem=f"has shape {tuple(t.shape)}, not K x K (K >= 2)", accepted=accepted)
    if not torch.isfinite(t).all() or (t < 0).any():
        raise UserError(key=name, problem="has negative or non-finite entries", accepted=accepted)
    sums = t.sum(dim=1)
    bad = torch.nonzero((sums - 1).abs() > ROW_SUM_TOLERANCE).flatten()
    if len(bad):
        row = int(bad[0])
        raise UserError(key=name, problem=f"is not row-stochastic: row {row} sums to {float(sums[row]):.6g}",
                        accepted=accepted)
    return t


def estimate_transition(probs: torch.Tensor, percentile: float = 97.0) -> torch.Tensor:
    """Patrini et al.'s estimator: row i is the predicted distribution of the sample
    with the highest probability of class i, among those below the ``percentile``-th
    percentile of that probability (100: the highest of all)."""
    probs = probs.double()
    rows = []
    for i in range(probs.shape[1]):
        column = probs[:, i]
        if percentile < 100:
            threshold = torch.quantile(column, percentile / 100, interpolation="higher")
            column = torch.where(column >= threshold, torch.full_like(column, -1.0), column)
        rows.append(probs[column.argmax()])
    return torch.stack(rows)


def forward_corrected_loss(logits: torch.Tensor, targets: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
    """``mean_i -log (T^T softmax(logits_i))_{y_i}``."""
    noisy_probs = logits.float().softmax(dim=1) @ transition.to(torch.float32)
    return F.nll_loss(noisy_probs.clamp_min(torch.finfo(torch.float32).tiny).log(), targets)


def backward_corrected_loss(logits: torch.Tensor, targets: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``mean_i (T^-1 l_i)_{y_i}`` with ``l_ik = -log softmax(logits_i)_k``."""
    losses = -F.log_softmax(logits.float(), dim=1)
    corrected = losses @ inverse.to(torch.float32).T
    return corrected.gather(1, targets.view(-1, 1)).mean()


class LossCorrection(Method):
    """The shared part of forward and backward correction: T, given or estimated."""

    kind = "correction"

    def __init__(self, transition: Any = None, estimate_epoch: int = 10, percentile: float = 97.0):
        super().__init__()
        self.given = check_transition(transition) if transition is not None else None
        self.estimate_epoch = validate.number("estimate_epoch", estimate_epoch, lo=0, integer=True)
        self.percentile = validate.number("percentile", percentile, lo=0.0, hi=100.0, lo_open=True)
        self.register_buffer("transition", torch.empty(0, 0, dtype=torch.float64), persistent=True)

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        if self.given is not None and len(self.given) != num_classes:
            raise UserError(key="transition", problem=f"is {len(self.given)} x {len(self.given)} but the dataset has "
                                                       f"{num_classes} classes",
                            accepted=f"a {num_classes} x {num_classes} matrix")
        start = self.given if self.given is not None else torch.eye(num_classes, dtype=torch.float64)
        self.transition = start.to(labels.device)

    @property
    def later_phase(self) -> str:
        return f"the {self.kind} correction"

    def phase_starts(self) -> dict[str, int]:
        """T estimated at ``estimate_epoch`` (a given T corrects from the first step)."""
        return {} if self.given is not None else {"estimate_epoch": self.estimate_epoch}

    def corrected(self, epoch: int) -> bool:
        return self.given is not None or epoch >= self.estimate_epoch

    def before_epoch(self, epoch, model, predict):
        if self.given is not None or epoch != self.estimate_epoch:
            return {}
        self.transition = estimate_transition(predict(model).softmax(dim=1), self.percentile).to(self.transition)
        self.on_new_transition()
        return {"method/transition_diagonal_mean": float(self.transition.diagonal().mean())}

    def on_new_transition(self) -> None:
        """Derived values of T (backward: its inverse)."""

    def hparams(self):
        return {"transition": "given" if self.given is not None else "estimated",
                "estimate_epoch": self.estimate_epoch, "percentile": self.percentile}


@trusted("method")
class ForwardCorrection(LossCorrection):
    kind = "forward"

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        if not self.corrected(epoch):
            return F.cross_entropy(logits.float(), targets)
        return forward_corrected_loss(logits, targets, self.transition)


@trusted("method")
class BackwardCorrection(LossCorrection):
    kind = "backward"

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        super().setup(labels, num_classes)
        self.on_new_transition()

    def on_new_transition(self) -> None:
        # an ill-conditioned T makes the corrected loss explode (the paper's caveat for backward)
        condition = float(torch.linalg.cond(self.transition))
        if not condition < 1e8:
            raise UserError(f"method=backward: the transition matrix is singular or nearly so (condition number "
                            f"{condition:.3g}), so T^-1 does not exist; accepted: an invertible T (or method=forward, "
                            "which does not invert it)")

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        if not self.corrected(epoch):
            return F.cross_entropy(logits.float(), targets)
        # K x K: inverting it each step costs nothing next to the network
        return backward_corrected_loss(logits, targets, torch.linalg.inv(self.transition))
