"""DivideMix (Li, Socher & Hoi, ICLR 2020, "DivideMix: Learning with Noisy Labels as
Semi-supervised Learning").

Two networks (the model and a peer, built like co-teaching's). For ``warmup_epochs``
both train with plain cross-entropy. Then, before each epoch (:meth:`before_epoch`),
each network's per-sample cross-entropy over the training split (eval mode, no
augmentation), min-max normalised, is fitted by a two-component Gaussian mixture
(scikit-learn's ``GaussianMixture``, the authors' settings); a sample's *clean
probability* is the posterior of the low-mean component. Each network trains on the
division of the *other* (co-divide): labelled = clean probability > ``p_threshold``.
In a step, with two augmented views x1, x2 of each sample:

- label co-refinement (labelled): ``sharpen(w * onehot(y) + (1 - w) * mean_v p_own(x_v), T)``,
  w the other network's clean probability;
- co-guessing (unlabelled): ``sharpen(mean over both networks and both views of p, T)``;
- MixMatch: the 2B views with their targets are mixed with a permutation of
  themselves, ``lam ~ Beta(alpha, alpha)``, ``lam' = max(lam, 1 - lam)``;
- loss = CE on the mixed labelled rows + ramp * lambda_u * MSE on the mixed unlabelled
  rows + ``sum_k pi_k log(pi_k / mean p_k)`` with the uniform prior pi (the penalty);
  ramp = clip((epoch - warmup) / rampup_epochs, 0, 1), per epoch (the authors ramp per step).

Differences from the authors' code, by design of this framework: both networks train in
the same step on the same batch (one optimizer over both; the authors alternate a whole
epoch of each, the other fixed), and each batch is split by the clean probabilities into
its labelled and unlabelled rows instead of drawing from two loaders; the guesses use
the networks in train mode under no_grad; the evaluation scores the model alone (the
authors average both networks). The two views come from the loader (``augment=crop_flip_x2``,
:class:`sat.data.views.TwoViews`); a single batch is used as both views (one augmented
batch, or none: a weaker DivideMix, equal to the paper's without augmentation).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sat.config import validate
from sat.config.trust import trusted
from sat.data.views import two_views
from sat.methods.base import PeerMethod
from sat.methods.mixup import draw_lambda, mix, refuse_distributed
from sat.parallel.batch import GlobalBatch

log = logging.getLogger("sat")


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``p ** (1 / T)``, renormalised per row (T < 1 makes it more confident)."""
    p = probs ** (1.0 / temperature)
    return p / p.sum(dim=1, keepdim=True)


def clean_probability(losses: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each sample's posterior of the low-loss component of a two-component GMM fitted to
    the min-max normalised ``losses`` (the authors' settings: max_iter 10, tol 1e-2,
    reg_covar 5e-4). Returned on the device of ``losses``, float32."""
    values = losses.detach().double().cpu().numpy()
    spread = max(values.max() - values.min(), np.finfo(np.float64).tiny)
    values = ((values - values.min()) / spread).reshape(-1, 1)
    from sklearn.mixture import GaussianMixture  # here: its import costs every process start ~1.5 s of CPU

    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed).fit(values)
    clean = gmm.predict_proba(values)[:, int(gmm.means_.argmin())]
    return torch.as_tensor(clean, dtype=torch.float32, device=losses.device)


def refine_labels(onehot: torch.Tensor, own_probs: torch.Tensor, clean_prob: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """Label co-refinement: ``sharpen(w * y + (1 - w) * p, T)``, ``p`` the network's own
    mean prediction over the views, ``w`` the other network's clean probability."""
    w = clean_prob.view(-1, 1)
    return sharpen(w * onehot + (1.0 - w) * own_probs, temperature)


def co_guess(probs: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Co-guessing: the sharpened mean of both networks' predictions over both views."""
    return sharpen(torch.stack(probs).mean(dim=0), temperature)


def mixmatch_loss(logits: torch.Tensor, mixed_targets: torch.Tensor, labelled: torch.Tensor, lambda_u: float
                  ) -> dict[str, torch.Tensor]:
    """The terms of the loss on a mixed batch: ``labelled`` marks the rows whose larger
    share (lam' >= 1/2) is a labelled sample. ``x``: soft CE, mean over labelled rows;
    ``u``: squared error of the probabilities, mean over unlabelled rows and classes;
    ``prior``: KL(uniform || mean prediction); ``total = x + lambda_u * u + prior``."""
    logits = logits.float()
    log_probs = F.log_softmax(logits, dim=1)
    probs = log_probs.exp()
    lab = labelled.float()
    n_classes = logits.shape[1]
    ce_rows = -(mixed_targets * log_probs).sum(dim=1)
    se_rows = ((probs - mixed_targets) ** 2).sum(dim=1)
    # an empty set contributes 0 (no host sync on its size: clamped counts)
    x = (ce_rows * lab).sum() / lab.sum().clamp_min(1.0)
    u = (se_rows * (1.0 - lab)).sum() / ((1.0 - lab).sum().clamp_min(1.0) * n_classes)
    prior = torch.full((n_classes,), 1.0 / n_classes, device=logits.device)
    penalty = (prior * (prior.log() - probs.mean(dim=0).log())).sum()
    return {"x": x, "u": u, "prior": penalty, "total": x + lambda_u * u + penalty}


@trusted("method")
class DivideMix(PeerMethod):
    def __init__(self, warmup_epochs: int = 10, lambda_u: float = 25.0, p_threshold: float = 0.5,
                 temperature: float = 0.5, alpha: float = 4.0, rampup_epochs: int = 16):
        super().__init__()
        self.warmup_epochs = validate.number("warmup_epochs", warmup_epochs, lo=0, integer=True)
        self.lambda_u = validate.number("lambda_u", lambda_u, lo=0.0)
        self.p_threshold = validate.number("p_threshold", p_threshold, lo=0.0, hi=1.0, hi_open=True)
        self.temperature = validate.number("temperature", temperature, lo=0.0, lo_open=True)
        self.alpha = validate.number("alpha", alpha, lo=0.0)
        self.rampup_epochs = validate.number("rampup_epochs", rampup_epochs, lo=0, integer=True)
        # row 0: the model's clean probabilities (the peer trains on them), row 1: the peer's
        self.register_buffer("clean_prob", torch.empty(2, 0), persistent=True)
        self.register_buffer("labels", torch.empty(0, dtype=torch.long), persistent=False)
        self.num_classes = 0

    # --- set-up -------------------------------------------------------------------------

    def use_global_batch(self, batch: GlobalBatch) -> None:
        refuse_distributed(batch, "dividemix")
        super().use_global_batch(batch)

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        self.labels, self.num_classes = labels, num_classes
        self.clean_prob = torch.ones(2, len(labels), device=labels.device)

    later_phase = "DivideMix's co-divide and MixMatch"

    def phase_starts(self) -> dict[str, int]:
        return {"warmup_epochs": self.warmup_epochs}

    # --- co-divide ----------------------------------------------------------------------

    def before_epoch(self, epoch, model, predict):
        if epoch < self.warmup_epochs:
            return {}
        metrics = {}
        for row, (name, network) in enumerate((("model", model), ("peer", self.peer))):
            logits = predict(network)[:, : self.num_classes]
            losses = F.cross_entropy(logits.float(), self.labels, reduction="none")
            self.clean_prob[row] = clean_probability(losses)
            metrics[f"method/labelled_{name}"] = float((self.clean_prob[row] > self.p_threshold).float().mean())
        return metrics

    # --- a step -------------------------------------------------------------------------

    def unlabelled_weight(self, epoch: int) -> float:
        """lambda_u times the linear ramp from the end of the warm-up."""
        if self.rampup_epochs == 0:
            return self.lambda_u
        return self.lambda_u * min(max((epoch - self.warmup_epochs) / self.rampup_epochs, 0.0), 1.0)

    def network_loss(self, network: nn.Module, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor,
                     clean_prob: torch.Tensor, own: list[torch.Tensor], other: list[torch.Tensor],
                     epoch: int, lam: float, perm: torch.Tensor) -> dict[str, torch.Tensor]:
        """One network's MixMatch loss on the batch divided by the other's ``clean_prob``;
        ``own``/``other``: each network's probabilities on the two views (no gradient)."""
        labelled = clean_prob > self.p_threshold
        onehot = F.one_hot(y, self.num_classes).float()
        refined = refine_labels(onehot, (own[0] + own[1]) / 2, clean_prob, self.temperature)
        guessed = co_guess([*own, *other], self.temperature)
        targets = torch.where(labelled.view(-1, 1), refined, guessed)
        inputs, targets, labelled = torch.cat([x1, x2]), torch.cat([targets, targets]), torch.cat([labelled, labelled])
        logits = network(mix(inputs, lam, perm))[:, : self.num_classes]
        return mixmatch_loss(logits, mix(targets, lam, perm), labelled, self.unlabelled_weight(epoch))

    def forward(self, model, x, y, index, epoch):
        if self.peer is None:
            raise RuntimeError("DivideMix has no peer network: call method.attach_model(build) before training")
        self.peer.train(model.training)
        x1, x2 = two_views(x, "method=dividemix", one_view_serves=True)
        if epoch < self.warmup_epochs:
            logits = model(x1)
            k = self.num_classes
            return F.cross_entropy(logits[:, :k].float(), y) + F.cross_entropy(self.peer(x1)[:, :k].float(), y), logits
        with torch.no_grad():
            clean_logits = model(x1)

            def probs(network: nn.Module) -> list[torch.Tensor]:
                first = (clean_logits if network is model else network(x1))[:, : self.num_classes].float().softmax(1)
                # one view given: both views are the same batch, so its prediction is computed once
                return [first, first if x2 is x1 else network(x2)[:, : self.num_classes].float().softmax(1)]

            mine, peers = probs(model), probs(self.peer)
        total = 0.0
        for network, other_division, own, other in ((model, self.clean_prob[1], mine, peers),
                                                    (self.peer, self.clean_prob[0], peers, mine)):
            lam = draw_lambda(self.alpha, symmetric_max=True)
            perm = torch.randperm(2 * len(y), device=y.device)
            total = total + self.network_loss(network, x1, x2, y, other_division[index], own, other, epoch, lam,
                                              perm)["total"]
        return total, clean_logits

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        raise TypeError("DivideMix's loss needs both networks and two views: use forward(model, ...)")

    def hparams(self):
        return {"warmup_epochs": self.warmup_epochs, "lambda_u": self.lambda_u, "p_threshold": self.p_threshold,
                "temperature": self.temperature, "alpha": self.alpha, "rampup_epochs": self.rampup_epochs}
