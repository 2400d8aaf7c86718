"""One training epoch and evaluation passes. Metrics stay on the device as tensors
until the epoch ends: no host sync inside the hot loop."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sat.data.loader import DeviceLoader
from sat.data.stream import StreamLoader
from sat.errors import UserError
from sat.global_batch import WHOLE_BATCH, GlobalBatch
from sat.methods.base import Method


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast where asked for, a no-op otherwise."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: the run stops, its last checkpoint stays good."""


class EpochStats:
    """One epoch's running sums, kept on the device; read once when the epoch ends.

    ``true_labels`` (the labels before noise, indexed like the loader) adds the
    memorisation sums: noisy-labelled samples predicted as their given and as their
    true label, and clean samples predicted right.
    """

    FIELDS = ("loss", "correct", "noisy_fit_given", "noisy_fit_true", "noisy", "clean_correct", "clean")

    def __init__(self, device: torch.device, true_labels: torch.Tensor | None = None, per_sample: bool = False,
                 batch: GlobalBatch = WHOLE_BATCH):
        """``per_sample``: also keep, per training sample, the model's probability of its
        given label and whether it predicts that label (as the training pass saw them),
        so the model's own ranking of suspect labels can be scored. ``batch``: under
        DDP, each step's sums are summed over the processes and the per-sample values
        gathered, so every process holds the statistics of the whole run."""
        self.true_labels, self.batch = true_labels, batch
        self.sums = torch.zeros(len(self.FIELDS), device=device, dtype=torch.float64)
        n = len(true_labels) if (per_sample and true_labels is not None) else 0
        self.prob_given = torch.ones(n, device=device) if n else None
        self.predicts_given = torch.ones(n, device=device, dtype=torch.bool) if n else None
        self.first_bad_step = torch.full((), -1, device=device, dtype=torch.int64)
        self.seen = 0  # host ints: a device scalar per step would sync with the device
        self.steps = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> None:
        loss = loss.detach()
        pred = logits.detach().argmax(dim=1)
        hit = pred == y
        # ``loss`` is this process's share of the global batch's mean (all of it in
        # one process): times total / world_size, summed over processes, the batch's sum
        total = self.batch.total(len(y))
        values = [loss * (total / self.batch.world_size), hit.sum()]
        if self.true_labels is not None:
            true = self.true_labels[index]
            noisy = y != true
            values += [(hit & noisy).sum(), ((pred == true) & noisy).sum(), noisy.sum(), (hit & ~noisy).sum(),
                       (~noisy).sum()]
        sums = self.batch.sum(torch.stack([v.to(torch.float64) for v in values]))
        self.sums[: len(values)] += sums
        if self.prob_given is not None:
            prob = logits.detach().float().softmax(dim=1).gather(1, y[:, None]).squeeze(1)
            index, prob, hit = self.batch.gather(index, prob, hit)
            self.prob_given[index] = prob
            self.predicts_given[index] = hit
        bad = ~torch.isfinite(sums[0])
        self.first_bad_step = torch.where(bad & (self.first_bad_step < 0), self.steps, self.first_bad_step)
        self.seen += total
        self.steps += 1

    def metrics(self, epoch: int) -> dict[str, float]:
        """The epoch's averages (the epoch's single host sync); raises
        :class:`NonFiniteLoss` naming the first bad step."""
        s = dict(zip(self.FIELDS, self.sums.tolist()))
        bad = int(self.first_bad_step)
        if bad >= 0:
            raise NonFiniteLoss(f"the training loss became non-finite at epoch {epoch + 1}, step {bad + 1}; the run "
                                "stopped and its last checkpoint is from before it. Lower optimizer.lr, or check the data")
        seen = max(self.seen, 1)
        out = {"train/loss": s["loss"] / seen, "train/acc": s["correct"] / seen}
        if self.true_labels is not None:
            if s["noisy"] > 0:
                out["train/noisy_acc_given"] = s["noisy_fit_given"] / s["noisy"]
                out["train/noisy_acc_true"] = s["noisy_fit_true"] / s["noisy"]
            if s["clean"] > 0:
                out["train/clean_acc"] = s["clean_correct"] / s["clean"]
        return out

    def state_dict(self) -> dict:
        state = {"sums": self.sums.cpu(), "first_bad_step": self.first_bad_step.cpu(), "seen": self.seen,
                 "steps": self.steps}
        if self.prob_given is not None:
            state.update(prob_given=self.prob_given.cpu(), predicts_given=self.predicts_given.cpu())
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.prob_given is not None:
            self.prob_given.copy_(state["prob_given"])
            self.predicts_given.copy_(state["predicts_given"])
        self.sums.copy_(state["sums"])
        self.first_bad_step.copy_(state["first_bad_step"])
        self.seen, self.steps = int(state["seen"]), int(state["steps"])


def train_one_epoch(
    model: nn.Module,
    method: Method,
    loader: DeviceLoader | StreamLoader,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    stats: EpochStats,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int], None] | None = None,
    step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> bool:
    """Train on the loader's (rest of the) epoch, adding to ``stats``. Returns True when
    the epoch is complete, False when ``should_stop()`` ended it after a step (the
    loader and ``stats`` then hold where it stopped, for a checkpoint). ``step(x, y,
    index, epoch) -> (loss, logits)`` replaces ``method(model, ...)`` where the step is
    wrapped (DDP: ``sat.ddp.DataParallelStep``)."""
    model.train()
    device = loader.device
    for x, y, index in loader:
        if channels_last:
            x = tuple(v.contiguous(memory_format=torch.channels_last) for v in x) if isinstance(x, tuple) \
                else x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            loss, logits = step(x, y, index, epoch) if step is not None else method(model, x, y, index, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        stats.add(loss, logits, y, index)
        if on_step is not None:
            on_step(stats.steps)
        if should_stop() and loader.position < len(loader):
            return False
    return True


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int, amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits (float32) for uint8 ``images`` already on the model's device, in eval mode."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].float().div_(255)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(images.device, amp_dtype):
            out.append(model(x).float())
    return torch.cat(out) if out else torch.empty(0, device=images.device)


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    if len(labels) == 0:
        return {}
    acc, loss = torch.stack([(logits.argmax(1) == labels).float().mean(), F.cross_entropy(logits, labels)]).tolist()
    return {"acc": acc, "loss": loss}


def evaluate(model, images, labels, batch_size, amp_dtype=None, channels_last=False,
             num_classes: int | None = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on a labelled set, over its first
    ``num_classes`` outputs (an abstaining model's extra output is not a class)."""
    if len(labels) == 0:  # no validation split
        return {}
    logits = predict(model, images, batch_size, amp_dtype, channels_last)
    return accuracy_and_loss(logits[:, :num_classes] if num_classes else logits, labels)
