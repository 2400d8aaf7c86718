"""One training epoch and evaluation passes. Metrics stay on the device as tensors
until the epoch ends: no host sync inside the hot loop."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from sat.data.loader import DeviceLoader
from sat.methods.base import Method


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast where asked for, a no-op otherwise."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def train_one_epoch(
    model: nn.Module,
    method: Method,
    loader: DeviceLoader,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    true_labels: torch.Tensor | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Train for one epoch; returns the epoch's averages.

    ``true_labels`` (the labels before noise, indexed like the loader) adds the
    memorisation metrics: accuracy of the noisy-labelled samples against their given
    and their true labels, and accuracy of the clean samples.
    """
    model.train()
    device = loader.images.device
    # loss sum, correct, noisy: correct-given, correct-true, count, clean: correct, count
    sums = torch.zeros(7, device=device, dtype=torch.float64)
    seen = 0  # a host int: creating a device scalar per step would sync with the device
    for x, y, index in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            loss, logits = method(model, x, y, index, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        pred = logits.detach().argmax(dim=1)
        hit = pred == y
        seen += len(y)
        stats = [loss.detach() * len(y), hit.sum()]
        if true_labels is not None:
            true = true_labels[index]
            noisy = y != true
            stats += [(hit & noisy).sum(), ((pred == true) & noisy).sum(), noisy.sum(), (hit & ~noisy).sum(), (~noisy).sum()]
        sums[: len(stats)] += torch.stack([s.to(torch.float64) for s in stats])

    s = sums.tolist()  # the epoch's single host sync
    metrics = {"train/loss": s[0] / max(seen, 1), "train/acc": s[1] / max(seen, 1)}
    if true_labels is not None:
        if s[4] > 0:
            metrics["train/noisy_acc_given"] = s[2] / s[4]
            metrics["train/noisy_acc_true"] = s[3] / s[4]
        if s[6] > 0:
            metrics["train/clean_acc"] = s[5] / s[6]
    return metrics


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


def evaluate(model, images, labels, batch_size, amp_dtype=None, channels_last=False) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on a labelled set."""
    return accuracy_and_loss(predict(model, images, batch_size, amp_dtype, channels_last), labels)
