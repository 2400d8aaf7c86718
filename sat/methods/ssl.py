"""Self-supervised methods: SSL-SAT (ours) and the BYOL, SimSiam and SimCLR baselines.

Every one trains, from two views ``x = (v1, v2)`` of each image, the model's backbone
(the zoo model without its classifier) with a projector MLP (and a predictor MLP but
for SimCLR), and never reads a label for it. The model's own classifier, trained by
cross-entropy on the *detached* features of both views, is the online linear probe:
its logits are what :meth:`forward` returns, so the run's val/test accuracy is the
probe's, and the backbone's gradients do not depend on the labels.

Target branch (``target_network``): ``ema``, a copy of backbone + projector moved
towards the online one before each step, ``tau`` from ``base_tau`` to 1 by BYOL's cosine
schedule (per epoch here); or ``online``, the online projections under stop-grad.

SSL-SAT: a bank of one unit vector ``t_i`` per training image (:class:`TargetBank`).
From ``start_epoch`` on, for the batch's images ``z_i = normalize(mean of the target
branch's two projections)``, the bank moves (first visit ``t_i = z_i``, then
``normalize(alpha t_i + (1 - alpha) z_i)``, updated before the loss as SAT's soft
targets are) and the loss is the mean over both views of ``2 - 2 cos(q(v), t_i)``.
Before ``start_epoch`` the target is the other view's (BYOL's with ``ema``, SimSiam's
with ``online``), in the same ``2 - 2 cos`` form. These details are ours: the journal
version's code was never released.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sat.config import validate
from sat.config.trust import trusted
from sat.data.views import two_views
from sat.methods.base import Method
from sat.ssl import backbone
from sat.ssl.bank import TargetBank
from sat.ssl.collapse import effective_rank, normalized_std
from sat.ssl.ema import copy_weights, cosine_tau, ema_update
from sat.ssl.heads import mlp_head
from sat.ssl.knn import check_knn, knn_accuracy
from sat.ssl.losses import check_temperature, cosine_loss, negative_cosine, nt_xent

TARGET_NETWORKS = ("ema", "online")


def probe_loss_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the probe over the labelled images; unlabeled ones (label < 0,
    STL-10's) are left out, and a batch without labels gives 0, not NaN."""
    loss = F.cross_entropy(logits.float(), labels, ignore_index=-1, reduction="sum")
    return loss / (labels >= 0).sum().clamp_min(1)


class SelfSupervised(Method):
    """What the four methods share: the heads, the target branch, the online probe."""

    uses_predictor = True
    takes_unlabeled = True  # the loss reads no label; the online probe leaves label -1 out

    def __init__(self, projector_hidden_dim: int = 4096, projector_dim: int = 256, predictor_hidden_dim: int = 4096,
                 target_network: str = "ema", base_tau: float = 0.99, knn_k: int = 200, knn_temperature: float = 0.1,
                 probe_lr: float | None = 0.1, probe_weight_decay: float | None = 0.0):
        super().__init__()
        # the online probe's own optimizer settings (solo-learn: classifier_lr, no weight decay); null: the optimizer's
        self.probe_lr = None if probe_lr is None else validate.number("probe_lr", probe_lr, lo=0.0, lo_open=True)
        self.probe_weight_decay = None if probe_weight_decay is None else \
            validate.number("probe_weight_decay", probe_weight_decay, lo=0.0)
        self.knn_k, self.knn_temperature = check_knn(knn_k, knn_temperature, ("knn_k", "knn_temperature"))
        self.num_classes = 0
        self.projector_hidden_dim = validate.positive_int("projector_hidden_dim", projector_hidden_dim)
        self.projector_dim = validate.positive_int("projector_dim", projector_dim)
        self.predictor_hidden_dim = validate.positive_int("predictor_hidden_dim", predictor_hidden_dim) \
            if self.uses_predictor else None
        self.target_network = validate.choice("target_network", target_network, TARGET_NETWORKS)
        self.base_tau = validate.number("base_tau", base_tau, lo=0.0, hi=1.0)
        self.epochs = 1
        self.projector: nn.Module | None = None
        self.predictor: nn.Module | None = None
        self.target_model: nn.Module | None = None
        self.target_projector: nn.Module | None = None
        self.register_buffer("target_started", torch.tensor(False))
        # this process's SSL loss summed over the epoch's steps, and the count (logged as train/ssl_loss)
        self.register_buffer("ssl_loss_sum", torch.zeros(2, dtype=torch.float64))

    # --- built with the model ---------------------------------------------------------

    def attach_model(self, build: Callable[[], nn.Module]) -> None:
        reference = build()
        dim = backbone.num_features(reference)
        self.projector = mlp_head(dim, self.projector_hidden_dim, self.projector_dim, "projector")
        if self.uses_predictor:
            self.predictor = mlp_head(self.projector_dim, self.predictor_hidden_dim, self.projector_dim,
                                      "predictor")
        if self.target_network == "ema":  # same architecture; starts as the online network at the first step
            self.target_model, self.target_projector = reference, copy.deepcopy(self.projector)
            for p in [*self.target_model.parameters(), *self.target_projector.parameters()]:
                p.requires_grad_(False)

    def networks(self) -> list[nn.Module]:
        return [m for m in (self.projector, self.predictor) if m is not None]

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        """The online linear probe (the model's classifier) trains with its own learning
        rate and weight decay, as solo-learn's classifier (``classifier_lr``, no weight
        decay): the accuracy it reports does not depend on the backbone's settings."""
        own = {k: v for k, v in (("lr", self.probe_lr), ("weight_decay", self.probe_weight_decay)) if v is not None}
        if not own:  # both null: the optimizer's settings, one group (how runs before probe_lr trained)
            return []
        return [{"params": list(backbone.classifier(model).parameters()), "name": "probe", **own}]

    def schedule(self, epochs: int) -> None:
        self.epochs = epochs

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        self.num_classes = num_classes

    # --- one step ---------------------------------------------------------------------

    def forward(self, model, x, y, index, epoch):
        if self.projector is None:
            raise RuntimeError("attach_model() must be called before training")
        views = two_views(x, "a self-supervised method")
        feats = [backbone.features(model, v) for v in views]
        z = [self.projector(f) for f in feats]
        ssl = self.ssl_loss(model, views, z, index, epoch)
        probe = backbone.classifier(model)(torch.cat(feats).detach())
        probe_loss = probe_loss_of(probe, torch.cat([y, y]))
        self.ssl_loss_sum += torch.stack([ssl.detach().double(), torch.ones((), dtype=torch.float64,
                                                                             device=ssl.device)])
        return ssl + probe_loss, probe[: len(y)]

    def ssl_loss(self, model, views, z, index, epoch) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.predictor(z)

    def target_projections(self, model: nn.Module, views, z, epoch: int) -> list[torch.Tensor]:
        """The target branch's projections of both views (no gradient)."""
        if self.target_network == "online":
            return [zi.detach() for zi in z]
        online = getattr(model, "_orig_mod", model)
        if not bool(self.target_started):
            copy_weights(self.target_model, online)
            copy_weights(self.target_projector, self.projector)
            self.target_started.fill_(True)
        else:  # the update BYOL makes after each optimizer step, made before the next one
            tau = self.tau(epoch)
            ema_update(self.target_model, online, tau)
            ema_update(self.target_projector, self.projector, tau)
        with torch.no_grad():
            return [self.target_projector(backbone.features(self.target_model, v)) for v in views]

    def tau(self, epoch: int) -> float:
        return cosine_tau(self.base_tau, epoch, self.epochs)

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        total, steps = self.ssl_loss_sum.tolist()
        self.ssl_loss_sum.zero_()
        out = {"train/ssl_loss": total / steps} if steps else {}
        if self.target_network == "ema":
            out["train/tau"] = self.tau(epoch - 1)
        return out

    @torch.no_grad()
    def representation_metrics(self, model, train, test):
        """kNN accuracy of the backbone's features (training images with labels as the bank,
        test images as queries) and collapse diagnostics of the test images' features and
        projections (heads in eval mode for it). ``train``, ``test``: loaders in order, no augmentation."""
        (bank, train_labels), (test, test_labels) = backbone.extract(model, train), backbone.extract(model, test)
        labelled = train_labels >= 0
        out = {"test/knn_acc": knn_accuracy(bank[labelled], train_labels[labelled], test, test_labels,
                                            self.num_classes, self.knn_k, self.knn_temperature)}
        was_training = self.projector.training
        self.projector.eval()
        z = torch.cat([self.projector(test[i: i + 1024]) for i in range(0, len(test), 1024)])
        self.projector.train(was_training)
        for name, emb in (("feature", test), ("projection", z)):
            out[f"repr/{name}_std"] = normalized_std(emb)
            out[f"repr/{name}_rank"] = effective_rank(emb)
        return out

    def headline(self) -> dict[str, str]:
        """The representation's kNN accuracy (what solo-learn and lightly report), not the
        online probe's, which is a monitor."""
        return {"test/knn_acc": "kNN test acc"}

    def hparams(self):
        return {"knn_k": self.knn_k, "knn_temperature": self.knn_temperature, "probe_lr": self.probe_lr,
                "probe_weight_decay": self.probe_weight_decay,
                "projector_hidden_dim": self.projector_hidden_dim, "projector_dim": self.projector_dim,
                "predictor_hidden_dim": self.predictor_hidden_dim, "target_network": self.target_network,
                "base_tau": self.base_tau}


@trusted("method")
class BYOL(SelfSupervised):
    """BYOL (Grill et al. 2020): predict the EMA target's projection of the other view,
    ``2 - 2 cos``, symmetrised as the paper's sum of both directions. ``base_tau=0`` makes
    the target the online network (under stop-grad) at every step."""

    def __init__(self, base_tau: float = 0.99, **kwargs):
        super().__init__(target_network="ema", base_tau=base_tau, **kwargs)

    def ssl_loss(self, model, views, z, index, epoch):
        t = self.target_projections(model, views, z, epoch)
        q = [self.predict(zi) for zi in z]
        return cosine_loss(q[0], t[1]).mean() + cosine_loss(q[1], t[0]).mean()


@trusted("method")
class SimSiam(SelfSupervised):
    """SimSiam (Chen & He 2021): ``D(p1, sg z2) / 2 + D(p2, sg z1) / 2``, D = -cos; no EMA."""

    def __init__(self, projector_hidden_dim: int = 2048, projector_dim: int = 2048, predictor_hidden_dim: int = 512,
                 **kwargs):
        super().__init__(projector_hidden_dim, projector_dim, predictor_hidden_dim, target_network="online", **kwargs)

    def ssl_loss(self, model, views, z, index, epoch):
        q = [self.predict(zi) for zi in z]
        return 0.5 * (negative_cosine(q[0], z[1].detach()).mean() + negative_cosine(q[1], z[0].detach()).mean())


@trusted("method")
class SimCLR(SelfSupervised):
    """SimCLR (Chen et al. 2020): NT-Xent over the batch's 2N projections."""

    uses_predictor = False

    def __init__(self, projector_hidden_dim: int = 2048, projector_dim: int = 256, temperature: float = 0.2, **kwargs):
        super().__init__(projector_hidden_dim, projector_dim, target_network="online", **kwargs)
        self.temperature = check_temperature(temperature)

    def ssl_loss(self, model, views, z, index, epoch):
        # Under DDP the negatives are the whole global batch's (gathered with their
        # gradients); this process's mean is over its own samples, as for every method.
        batch = self.global_batch
        z1, z2 = batch.gather_with_grad(z[0]), batch.gather_with_grad(z[1])
        mine = batch.local(torch.arange(len(z1), device=z1.device))
        return nt_xent(z1, z2, self.temperature, queries=mine)

    def hparams(self):
        return {**super().hparams(), "temperature": self.temperature}


@trusted("method")
class SelfSupervisedSAT(SelfSupervised):
    """SSL-SAT: the online prediction of each view regresses onto the image's own
    accumulated target ``t_i`` (see the module's docstring)."""

    def __init__(self, alpha: float = 0.9, start_epoch: int = 10, init: str = "first", target_network: str = "ema",
                 **kwargs):
        super().__init__(target_network=target_network, **kwargs)
        self.bank = TargetBank(alpha, init)
        self.alpha, self.init = self.bank.alpha, self.bank.init
        self.start_epoch = validate.number("start_epoch", start_epoch, lo=0, integer=True)

    later_phase = "the per-image targets"

    def phase_starts(self) -> dict[str, int]:
        return {"start_epoch": self.start_epoch}

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        super().setup(labels, num_classes)
        self.bank.allocate(len(labels), self.projector_dim, labels.device)

    def ssl_loss(self, model, views, z, index, epoch):
        t = self.target_projections(model, views, z, epoch)
        q = [self.predict(zi) for zi in z]
        if epoch < self.start_epoch:  # the cross-view target (BYOL's with ema, SimSiam's with online)
            return 0.5 * (cosine_loss(q[0], t[1]).mean() + cosine_loss(q[1], t[0]).mean())
        mean = F.normalize((t[0].float() + t[1].float()) / 2, dim=1)
        index, mean = self.global_batch.gather(index, mean)  # under DDP: every process's images
        targets = self.global_batch.local(self.bank.update(index, mean))
        return 0.5 * (cosine_loss(q[0], targets).mean() + cosine_loss(q[1], targets).mean())

    def hparams(self):
        return {**super().hparams(), "alpha": self.alpha, "start_epoch": self.start_epoch, "init": self.init}
