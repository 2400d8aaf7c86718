"""Self-Adaptive Training (Huang, Zhang & Zhang, NeurIPS 2020).

Each training sample keeps a soft target ``t_i``, initialised to the one-hot given
label. Before ``start_epoch`` the loss is plain cross-entropy. From then on, whenever
sample ``i`` is in a batch::

    t_i <- alpha * t_i + (1 - alpha) * softmax(logits_i)      (detached)
    w_i  = max_k t_ik, normalised so that the batch's weights sum to its size
    loss = mean_i w_i * sum_k -t_ik log p_ik
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
import torch.nn.functional as F

from sat.config import validate
from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.auto_start import AutoStartEpoch, PredictionChanges
from sat.methods.base import Method

log = logging.getLogger("sat")


def scale_for_width(alpha: float, start_epoch: int, width: int, reference_width: int = 64) -> tuple[float, int]:
    """The reference code's rescaling of SAT's hyper-parameters for a ResNet of base
    width ``width`` (the standard ResNet has 64): ``alpha ** (width / reference_width)``
    and ``int(start_epoch * reference_width / width)``. Narrow nets fit slowly, so they
    get a longer warm-up and a slower-moving target."""
    validate.number("width", width, lo=0, lo_open=True)
    validate.number("reference_width", reference_width, lo=0, lo_open=True)
    return alpha ** (width / reference_width), int(start_epoch * reference_width / width)


@trusted("method", "sat.methods.SelfAdaptiveTraining")
class SelfAdaptiveTraining(Method):
    """SAT with the cross-entropy target loss.

    ``width_scaling=True`` applies :func:`scale_for_width` with the model's ``width``.
    Where the scaled start would not fit the run, ``max_start_fraction`` (if set) caps
    it at that fraction of the run's epochs; without it such a run is refused. The
    values actually used are ``self.alpha`` / ``self.start_epoch`` and are logged.
    """

    def __init__(
        self,
        alpha: float = 0.9,
        start_epoch: int | Literal["auto"] = 60,  # auto: the auto_start detector decides during the run
        width_scaling: bool = False,
        width: int | None = None,
        reference_width: int = 64,
        max_start_fraction: float | None = None,
        auto_start: AutoStartEpoch | None = None,
    ):
        super().__init__()
        alpha = validate.number("alpha", alpha, lo=0.0, hi=1.0, hi_open=True)
        # start_epoch=auto: the detector decides during the run (from label-free signals)
        self.auto_start = auto_start if start_epoch == "auto" else None
        if start_epoch == "auto":
            if auto_start is None:
                raise UserError(key="start_epoch", value="auto", problem="needs {.auto_start} (a detector)",
                                accepted="one of conf/auto_start/ (val_acc, prediction_changes) as {.auto_start}")
            start_epoch = 0
        start_epoch = validate.number("start_epoch", start_epoch, lo=0, integer=True)
        self.width_scaling = validate.flag("width_scaling", width_scaling)
        self.max_start_fraction = None if max_start_fraction is None else validate.number(
            "max_start_fraction", max_start_fraction, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        self.base_alpha, self.base_start_epoch = alpha, start_epoch
        self.width, self.reference_width = width, reference_width
        if width_scaling:
            if width is None:
                raise UserError(key="width_scaling", value=True, problem="needs {.width} (the model's width); got null",
                                accepted="{.width}=<the model's base width>, or {key}=false")
            width = validate.positive_int("width", width)
            reference_width = validate.positive_int("reference_width", reference_width)
            alpha, start_epoch = scale_for_width(alpha, start_epoch, width, reference_width)
        self.alpha, self.start_epoch = alpha, start_epoch
        self.scaled_start_epoch = start_epoch  # before any cap; logged
        if self.auto_start is not None:
            self.start_epoch = self.scaled_start_epoch = None  # not decided yet
        self.register_buffer("targets", torch.empty(0, 0), persistent=True)
        self.changes: PredictionChanges | None = None  # for auto_start on prediction changes

    later_phase = "SAT"  # "..., so SAT would never start"

    def schedule(self, epochs: int) -> None:
        """Cap a width-scaled start at ``max_start_fraction`` of the run. Under
        ``start_epoch=auto`` the detector decides by half the run at the latest."""
        if self.auto_start is not None:
            if self.auto_start.max_epoch is None:
                self.auto_start.max_epoch = max(1, epochs // 2)
            return
        if self.max_start_fraction is not None:
            cap = int(self.max_start_fraction * epochs)
            if self.scaled_start_epoch > cap:
                log.info("%s: start epoch %d capped at %d (max_start_fraction %g of %d epochs)", type(self).__name__,
                         self.scaled_start_epoch, cap, self.max_start_fraction, epochs)
            self.start_epoch = min(self.scaled_start_epoch, cap)

    def phase_starts(self) -> dict[str, int]:
        """The soft targets' start; under ``start_epoch=auto``, until the detector has
        decided, the latest it may decide (``auto_start.max_epoch``)."""
        if self.start_epoch is None:
            latest = self.auto_start.max_epoch if self.auto_start is not None else None
            return {} if latest is None else {"auto_start.max_epoch": latest}
        return {"start_epoch": self.start_epoch}

    def phase_never_starts(self, key: str, start: int, epochs: int) -> UserError:
        """SAT would silently be plain CE: refused, with what works (under width scaling,
        the largest start_epoch and the cap)."""
        if key == "auto_start.max_epoch":
            return UserError(key=key, value=start, problem=f">= trainer.epochs={epochs}, so SAT might never start",
                             accepted=f"{{key}} < {epochs} (null: half the run)")
        if self.width_scaling and start != self.base_start_epoch:
            # int(E * ref / w) < epochs  <=>  E < epochs * w / ref
            largest = math.ceil(epochs * self.width / self.reference_width) - 1
            return UserError(
                key="start_epoch", value=self.base_start_epoch,
                problem=f"becomes {start} by width scaling ({{.width}} {self.width}, {{.reference_width}} "
                        f"{self.reference_width}) >= trainer.epochs={epochs}, so SAT would never start",
                accepted=f"trainer.epochs > {start}, {{key}} <= {largest}, or {{.max_start_fraction}}=0.5 "
                         f"(starts at epoch {int(0.5 * epochs)})")
        return super().phase_never_starts(key, start, epochs)

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        self.targets = F.one_hot(labels.long(), num_classes).float()
        if self.auto_start is not None and self.auto_start.signal == "train/prediction_changes":
            self.changes = PredictionChanges(len(labels), labels.device)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self.changes is not None:  # not a buffer (its shape is fixed by setup): move it along
            self.changes.previous = fn(self.changes.previous)
            self.changes.counts = fn(self.changes.counts)
        return self

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        """Under start_epoch=auto: feed the detector, and start the targets when it says."""
        if self.auto_start is None:
            return {}
        extra = {} if self.changes is None else {"train/prediction_changes": self.changes.compute()}
        with validate.argument("auto_start"):  # the detector's refusals name auto_start.<its argument>
            started = self.start_epoch is None and self.auto_start.update(epoch, {**metrics, **extra})
        if started:
            self.start_epoch = self.scaled_start_epoch = self.auto_start.start_epoch
            log.info("%s: %s", type(self).__name__, self.auto_start.reason)
        return extra

    def get_extra_state(self) -> dict:
        state: dict = {"start_epoch": self.start_epoch}
        if self.auto_start is not None:
            state["auto_start"] = self.auto_start.state_dict()
        if self.changes is not None:
            state["changes"] = self.changes.state_dict()["previous"].cpu()
        return state

    def set_extra_state(self, state: dict) -> None:
        self.start_epoch = state["start_epoch"]
        if self.auto_start is not None:
            self.auto_start.load_state_dict(state["auto_start"])
            self.scaled_start_epoch = self.start_epoch
        if self.changes is not None and "changes" in state:
            self.changes.previous.copy_(state["changes"])

    def soft_labels(self) -> torch.Tensor:
        return self.targets

    def _update_targets(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Move the targets of the global batch's samples (under DDP: every process's
        shard, gathered, so all keep the same targets); returns them, one row per
        sample of the global batch."""
        prob = logits.detach().float().softmax(dim=1)
        index, prob = self.global_batch.gather(index, prob)
        t = self.alpha * self.targets[index] + (1.0 - self.alpha) * prob
        self.targets[index] = t
        return t

    @staticmethod
    def _weights(t: torch.Tensor) -> torch.Tensor:
        """max_k t_ik, normalised so that the weights of the batch ``t`` sum to its size."""
        w = t.max(dim=1).values
        return w * (t.shape[0] / w.sum())

    def target_loss(self, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Per-sample loss against soft targets ``t``."""
        return -(t * F.log_softmax(logits.float(), dim=1)).sum(dim=1)

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        if self.changes is not None:
            self.changes.update(*self.global_batch.gather(index, logits.detach().argmax(dim=1)))
        if self.start_epoch is None or epoch < self.start_epoch:
            return F.cross_entropy(logits.float(), targets)
        t_batch = self._update_targets(logits, index)
        # weights normalised over the global batch; the loss over this process's samples
        w, t = self.global_batch.local(self._weights(t_batch)), self.global_batch.local(t_batch)
        return (w * self.target_loss(logits, t)).mean()

    def hparams(self):
        return {
            "alpha": self.alpha,
            "start_epoch": self.start_epoch,
            "width_scaling": self.width_scaling,
            "base_alpha": self.base_alpha,
            "base_start_epoch": self.base_start_epoch,
            "scaled_start_epoch": self.scaled_start_epoch,
            "max_start_fraction": self.max_start_fraction,
            **({} if self.auto_start is None else {"auto_start": self.auto_start.summary()}),
        }


@trusted("method", "sat.methods.SelfAdaptiveTrainingSCE")
class SelfAdaptiveTrainingSCE(SelfAdaptiveTraining):
    """SAT with the symmetric cross-entropy target loss, exactly as the reference
    computes it: ``-ce_weight * sum t log p - rce_weight * sum p log t``, unclamped.
    ``t > 0`` always holds (the update before the loss mixes in ``p > 0``); only an
    exact zero, which float underflow could produce, is kept from making ``log`` -inf."""

    def __init__(self, alpha: float = 0.9, start_epoch: int | Literal["auto"] = 60, ce_weight: float = 1.0,
                 rce_weight: float = 0.3, **kwargs):
        super().__init__(alpha, start_epoch, **kwargs)
        self.ce_weight = validate.number("ce_weight", ce_weight, lo=0.0)
        self.rce_weight = validate.number("rce_weight", rce_weight, lo=0.0)

    def target_loss(self, logits, t):
        ce = super().target_loss(logits, t)
        p = logits.float().softmax(dim=1)
        rce = -(p * t.clamp_min(torch.finfo(t.dtype).tiny).log()).sum(dim=1)
        return self.ce_weight * ce + self.rce_weight * rce

    def hparams(self):
        return {**super().hparams(), "ce_weight": self.ce_weight, "rce_weight": self.rce_weight}
