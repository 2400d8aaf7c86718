"""One training epoch, and one evaluation loop over any loader. Metrics stay on the
device as tensors until the epoch ends: no host sync inside the hot loop, and under
DDP one reduction per epoch (the sums are additive), not one per step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sat.data.loader import Loader
from sat.errors import UserError
from sat.methods.base import Method
from sat.parallel.batch import WHOLE_BATCH, GlobalBatch


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

    Under DDP each process adds up its own shards; :meth:`reduce` (at the epoch's end,
    and before a mid-epoch checkpoint) combines them over the processes in one
    collective, after which every process holds the statistics of the whole run.
    """

    FIELDS = ("loss", "correct", "noisy_fit_given", "noisy_fit_true", "noisy", "clean_correct", "clean", "seen")

    def __init__(self, device: torch.device, true_labels: torch.Tensor | None = None, per_sample: bool = False,
                 batch: GlobalBatch = WHOLE_BATCH):
        """``per_sample``: also keep, per training sample, the model's probability of its
        given label and whether it predicts that label (as the training pass saw them),
        so the model's own ranking of suspect labels can be scored."""
        self.true_labels, self.batch = true_labels, batch
        self.totals = torch.zeros(len(self.FIELDS), device=device, dtype=torch.float64)  # reduced
        self.sums = torch.zeros_like(self.totals)  # this process's, since the last reduce
        n = len(true_labels) if (per_sample and true_labels is not None) else 0
        self.prob_given = torch.ones(n, device=device) if n else None
        self.predicts_given = torch.ones(n, device=device, dtype=torch.bool) if n else None
        # this process's per-sample values since the last reduce (row 0: prob, 1: hit, 2: seen)
        self._local = torch.zeros(3, n, device=device) if n and batch.world_size > 1 else None
        self.first_bad_step = torch.full((), -1, device=device, dtype=torch.int64)
        self.steps = 0  # host ints: a device scalar per step would sync with the device
        self.seen = 0  # this process's samples

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
        values += [torch.zeros((), device=loss.device)] * (len(self.FIELDS) - 1 - len(values))
        values.append(torch.tensor(float(len(y)), device=loss.device))
        self.sums += torch.stack([v.to(torch.float64) for v in values])
        if self.prob_given is not None:
            prob = logits.detach().float().softmax(dim=1).gather(1, y[:, None]).squeeze(1)
            if self._local is None:
                self.prob_given[index] = prob
                self.predicts_given[index] = hit
            else:
                self._local[:, index] = torch.stack([prob, hit.float(), torch.ones_like(prob)])
        bad = ~torch.isfinite(loss)
        self.first_bad_step = torch.where(bad & (self.first_bad_step < 0), self.steps, self.first_bad_step)
        self.seen += len(y)
        self.steps += 1

    def reduce(self) -> None:
        """Combine every process's sums (a collective under DDP: all processes call it)."""
        if self.batch.world_size == 1:
            self.totals += self.sums
            self.sums.zero_()
            return
        packed = self.sums if self._local is None else torch.cat([self.sums, self._local.double().flatten()])
        packed = self.batch.sum(packed)
        self.totals += packed[: len(self.FIELDS)]
        self.sums.zero_()
        if self._local is not None:
            prob, hit, seen = packed[len(self.FIELDS):].view(3, -1).float()
            touched = seen > 0
            self.prob_given[touched] = prob[touched]
            self.predicts_given[touched] = hit[touched] > 0
            self._local.zero_()
        bad = torch.where(self.first_bad_step < 0, torch.iinfo(torch.int64).max, self.first_bad_step)
        bad = self.batch.min(bad)
        self.first_bad_step = torch.where(bad == torch.iinfo(torch.int64).max, -1, bad)

    def metrics(self, epoch: int) -> dict[str, float]:
        """The epoch's averages (the epoch's single host sync); raises
        :class:`NonFiniteLoss` naming the first bad step."""
        self.reduce()
        s = dict(zip(self.FIELDS, self.totals.tolist()))
        bad = int(self.first_bad_step)
        if bad >= 0 or not torch.isfinite(self.totals[0]):
            step = f", step {bad + 1}" if bad >= 0 else ""
            raise NonFiniteLoss(f"the training loss became non-finite at epoch {epoch + 1}{step}; the run "
                                "stopped and its last checkpoint is from before it. Lower optimizer.lr, or check the data")
        seen = max(s["seen"], 1)
        out = {"train/loss": s["loss"] / seen, "train/acc": s["correct"] / seen}
        if self.true_labels is not None:
            if s["noisy"] > 0:
                out["train/noisy_acc_given"] = s["noisy_fit_given"] / s["noisy"]
                out["train/noisy_acc_true"] = s["noisy_fit_true"] / s["noisy"]
            if s["clean"] > 0:
                out["train/clean_acc"] = s["clean_correct"] / s["clean"]
        return out

    def state_dict(self) -> dict:
        """The reduced statistics (call on every process under DDP: it reduces first)."""
        self.reduce()
        state = {"sums": self.totals.cpu(), "first_bad_step": self.first_bad_step.cpu(), "steps": self.steps}
        if self.prob_given is not None:
            state.update(prob_given=self.prob_given.cpu(), predicts_given=self.predicts_given.cpu())
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.prob_given is not None:
            self.prob_given.copy_(state["prob_given"])
            self.predicts_given.copy_(state["predicts_given"])
        sums = state["sums"]
        if len(sums) == len(self.FIELDS) - 1:  # a checkpoint from before "seen" was a field
            sums = torch.cat([sums, torch.tensor([float(state["seen"])], dtype=sums.dtype)])
        self.totals.copy_(sums)
        self.sums.zero_()
        self.first_bad_step.copy_(state["first_bad_step"])
        self.steps = int(state["steps"])


def _channels_last(x: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    if isinstance(x, tuple):
        return tuple(_channels_last(v) for v in x)
    return x.contiguous(memory_format=torch.channels_last)


def train_one_epoch(
    model: nn.Module,
    method: Method,
    loader: Loader,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    stats: EpochStats,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int], None] | None = None,
    step: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> bool:
    """Train on the loader's (rest of the) epoch, adding to ``stats``. Returns True when
    the epoch is complete, False when ``should_stop()`` ended it after a step (the
    loader and ``stats`` then hold where it stopped, for a checkpoint). ``step(x, y,
    index, epoch) -> (loss, logits)`` replaces ``method(model, ...)`` where the step is
    wrapped (DDP: ``sat.tasks.train.ddp.DataParallelStep``)."""
    model.train()
    device = loader.device
    for x, y, index in loader:
        if channels_last:
            x = _channels_last(x)
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
def predict(model: nn.Module, loader: Loader, amp_dtype: torch.dtype | None = None, channels_last: bool = False,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits float32, labels, index)`` of every batch of ``loader`` (unshuffled, no
    augmentation: the split in its order), in eval mode, concatenated."""
    model.eval()
    logits, labels, index = [], [], []
    for x, y, i in loader:
        if channels_last:
            x = _channels_last(x)
        with autocast(loader.device, amp_dtype):
            logits.append(model(x).float())
        labels.append(y)
        index.append(i)
    if not logits:
        empty = torch.empty(0, dtype=torch.int64, device=loader.device)
        return torch.empty(0, device=loader.device), empty, empty
    return torch.cat(logits), torch.cat(labels), torch.cat(index)


def predict_images(model: nn.Module, images: torch.Tensor, batch_size: int, amp_dtype: torch.dtype | None = None,
                   channels_last: bool = False) -> torch.Tensor:
    """Logits (float32) for uint8 ``images`` already on the model's device, in their order."""
    from sat.data.loader import DeviceLoader

    labels = torch.zeros(len(images), dtype=torch.int64, device=images.device)
    return predict(model, DeviceLoader(images, labels, batch_size), amp_dtype, channels_last)[0]


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    if len(labels) == 0:
        return {}
    correct, loss = torch.stack([(logits.argmax(1) == labels).sum().double(),
                                 F.cross_entropy(logits, labels).double()]).tolist()
    return {"acc": correct / len(labels), "loss": loss}  # the count over the number, as evaluate() computes it


@torch.no_grad()
def evaluate(model: nn.Module, loader: Loader, amp_dtype: torch.dtype | None = None, channels_last: bool = False,
             num_classes: int | None = None, batch: GlobalBatch = WHOLE_BATCH) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` over every batch of ``loader``, over
    its first ``num_classes`` outputs (an abstaining model's extra output is not a
    class). Under DDP each process's loader holds a shard of the set and ``batch`` sums
    the counts over the processes: every process gets the whole set's figures."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=loader.device)
    for x, y, _ in loader:
        if len(y) == 0:
            continue
        if channels_last:
            x = _channels_last(x)
        with autocast(loader.device, amp_dtype):
            logits = model(x).float()
        logits = logits[:, :num_classes] if num_classes else logits
        sums += torch.stack([(logits.argmax(1) == y).sum().double(),
                             F.cross_entropy(logits, y, reduction="sum").double(),
                             torch.tensor(float(len(y)), dtype=torch.float64, device=loader.device)])
    correct, loss, count = batch.sum(sums).tolist()
    return {"acc": correct / count, "loss": loss / count} if count else {}
