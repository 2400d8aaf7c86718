"""Evaluation over a loader (StreamLoader or DeviceLoader) instead of a tensor of
images: the test and validation sets of streamed datasets do not fit on the device."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sat.engine import accuracy_and_loss, autocast


@torch.no_grad()
def predict_loader(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    amp_dtype: torch.dtype | None = None, channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits float32, labels, index)`` of every batch, in eval mode, concatenated in
    the loader's order (use an unshuffled loader with the evaluation transform)."""
    model.eval()
    logits, labels, index = [], [], []
    for x, y, i in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(x.device, amp_dtype):
            logits.append(model(x).float())
        labels.append(y)
        index.append(i)
    if not logits:
        empty = torch.empty(0, dtype=torch.int64)
        return torch.empty(0), empty, empty
    return torch.cat(logits), torch.cat(labels), torch.cat(index)


def evaluate_loader(model: nn.Module, loader, amp_dtype: torch.dtype | None = None,
                    channels_last: bool = False, num_classes: int | None = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy over every batch of ``loader`` (over the first
    ``num_classes`` outputs: an abstaining model's extra output is not a class)."""
    logits, labels, _ = predict_loader(model, loader, amp_dtype, channels_last)
    return accuracy_and_loss(logits[:, :num_classes] if num_classes else logits, labels)
