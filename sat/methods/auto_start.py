"""``method.start_epoch=auto``: choose SAT's start epoch E_s from signals available
without clean labels.

SAT's targets should start after the network has fitted the clean patterns and before
it memorises the wrong labels (early learning, then memorisation: Arpit et al., ICML
2017; Liu et al., NeurIPS 2020). Two label-free signals mark the turn:

- **Noisy-validation accuracy** (``signal="val/acc", mode="max"``, the default). Chen
  et al., ICML 2019 ("Understanding and Utilizing Deep Neural Networks Trained with
  Noisy Labels") show that, under symmetric noise, accuracy on a validation set with the
  same noise is an increasing affine function of the clean test accuracy, so it peaks
  when clean accuracy does: when it stops improving, memorisation has begun.
- **Prediction changes** (``signal="train/prediction_changes", mode="min"``; computed by
  :class:`PredictionChanges`). Yuan, Feng & Liu, ICLR 2024 ("Early Stopping Against Label
  Noise Without Validation Data", "Label Wave") track how many training samples change
  their predicted class between consecutive epochs: it falls while the clean patterns
  are learnt and rises again once the network starts fitting the wrong labels; its
  minimum marks the turn. It needs no validation split.

Criterion (both signals): the signal, averaged over the last ``smoothing`` epochs, has
not improved on its best by more than ``min_delta`` for ``patience`` epochs (the
early-stopping rule, with the improvement threshold in the signal's units, measured from
the best value, so a slow creep that adds up to more than ``min_delta`` counts). SAT then
starts with the next epoch. ``min_epoch`` / ``max_epoch`` bound the choice. The
detector cannot look ahead, so it starts SAT ``patience`` epochs after the best epoch.

Epochs are counted as the training loop logs them: ``update(epoch, metrics)`` receives
the number of epochs completed and that epoch's metrics; when it returns True the
targets start at ``start_epoch`` (== that number), i.e. with the next epoch, whose
0-based index in ``Method.loss(..., epoch)`` is ``start_epoch``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from sat.config import validate
from sat.config.trust import trusted
from sat.errors import UserError


@trusted("component")
class AutoStartEpoch:
    """Decides SAT's start epoch from a per-epoch signal; see the module docstring."""

    def __init__(self, signal: str = "val/acc", mode: str = "max", patience: int = 5, min_delta: float = 0.001,
                 smoothing: int = 3, min_epoch: int = 0, max_epoch: int | None = None):
        if mode not in ("max", "min"):
            raise UserError(key="mode", value=mode, problem="is not supported",
                            accepted="max (accuracy), min (loss, changes)")
        patience, smoothing = validate.positive_int("patience", patience), validate.positive_int("smoothing", smoothing)
        min_delta = validate.number("min_delta", min_delta, lo=0.0)
        min_epoch = validate.number("min_epoch", min_epoch, lo=0, integer=True)
        if max_epoch is not None and max_epoch < max(min_epoch, 1):
            raise UserError(key="max_epoch", value=max_epoch, problem="is out of range",
                            accepted=f"an integer >= {max(min_epoch, 1)} (>= {{.min_epoch}} and >= 1), or null")
        self.signal, self.mode, self.patience, self.min_delta = signal, mode, int(patience), float(min_delta)
        self.smoothing, self.min_epoch, self.max_epoch = int(smoothing), int(min_epoch), max_epoch
        self.values: list[float] = []  # the raw signal, one per epoch seen
        self.last_epoch: int | None = None
        self.best: float | None = None  # best smoothed value so far
        self.best_epoch: int | None = None
        self.start_epoch: int | None = None
        self.reason = ""

    @property
    def started(self) -> bool:
        return self.start_epoch is not None

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def _describe_signal(self) -> str:
        return self.signal if self.smoothing == 1 else f"{self.signal} (mean of the last {self.smoothing} epochs)"

    def update(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Feed the metrics of the epoch just completed (``epoch`` = epochs completed);
        True once SAT should start (and from then on). A NaN signal (no data yet, e.g.
        prediction changes after the first epoch) is skipped."""
        if self.started:
            return True
        if self.last_epoch is not None and epoch <= self.last_epoch:
            raise ValueError(f"auto start: epoch {epoch} after epoch {self.last_epoch}; epochs must increase")
        if self.signal not in metrics:
            raise UserError(key="signal", value=self.signal,
                            problem=f"is not among the epoch's metrics ({', '.join(sorted(metrics))})",
                            accepted="one of them (val/acc needs a validation split: dataset.val_size > 0)")
        self.last_epoch = epoch
        value = float(metrics[self.signal])
        if not math.isnan(value):
            self.values.append(value)
            smoothed = sum(self.values[-self.smoothing:]) / len(self.values[-self.smoothing:])
            if self._improves(smoothed):
                self.best, self.best_epoch = smoothed, epoch
        if self.best_epoch is not None and epoch >= self.min_epoch and epoch - self.best_epoch >= self.patience:
            verb = "risen" if self.mode == "max" else "fallen"
            self._start(epoch, f"{self._describe_signal()} has not {verb} by more than {self.min_delta:g} on its best "
                               f"{self.best:.4g} (epoch {self.best_epoch}) for {epoch - self.best_epoch} epochs "
                               f"(patience {self.patience})")
        elif self.max_epoch is not None and epoch >= self.max_epoch:
            self._start(epoch, f"{self._describe_signal()} was still improving or undecided at "
                               f"auto_start.max_epoch={self.max_epoch} (best {self.best} at epoch {self.best_epoch})")
        return self.started

    def _start(self, epoch: int, why: str) -> None:
        self.start_epoch = epoch
        self.reason = f"SAT starts at epoch {epoch}: {why}"

    def summary(self) -> dict[str, Any]:
        """What was decided and why, for logs and ``summary.json``."""
        return {"start_epoch": self.start_epoch, "reason": self.reason, "signal": self.signal,
                "best": self.best, "best_epoch": self.best_epoch}

    def state_dict(self) -> dict[str, Any]:
        """Plain data (loads with ``torch.load(weights_only=True)``), for resuming."""
        return {"values": list(self.values), "last_epoch": self.last_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "start_epoch": self.start_epoch, "reason": self.reason}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.values = [float(v) for v in state["values"]]
        self.last_epoch, self.best, self.best_epoch = state["last_epoch"], state["best"], state["best_epoch"]
        self.start_epoch, self.reason = state["start_epoch"], str(state["reason"])


class PredictionChanges:
    """Per epoch, the fraction of training samples whose predicted class differs from
    their prediction in the previous epoch (Label Wave's "prediction changes", as a
    fraction). Predictions are those of the training pass itself, so the count costs no
    extra forward pass; it stays on the device until :meth:`compute` (one sync per epoch).
    """

    def __init__(self, num_samples: int, device: torch.device | str | None = None):
        self.previous = torch.full((num_samples,), -1, dtype=torch.int64, device=device)
        self.counts = torch.zeros(2, dtype=torch.int64, device=device)  # changed, compared

    def update(self, index: torch.Tensor, predicted: torch.Tensor) -> None:
        """Record a batch's predicted classes (``logits.argmax(1)``) by dataset index."""
        before = self.previous[index]
        seen = before >= 0
        self.counts += torch.stack([(seen & (before != predicted)).sum(), seen.sum()])
        self.previous[index] = predicted

    def compute(self) -> float:
        """The epoch's fraction (NaN in the first epoch: nothing to compare), and reset."""
        changed, compared = self.counts.tolist()
        self.counts.zero_()
        return changed / compared if compared else math.nan

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"previous": self.previous.clone()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.previous.copy_(state["previous"])
