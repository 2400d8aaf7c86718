"""The exponential moving average target network (BYOL)."""

from __future__ import annotations

import math

import torch
from torch import nn


def cosine_tau(base_tau: float, epoch: int, epochs: int) -> float:
    """BYOL's schedule: ``1 - (1 - base_tau) * (cos(pi * epoch / epochs) + 1) / 2``, from
    ``base_tau`` at the start towards 1 at the end (here per epoch; BYOL steps it per step)."""
    return 1.0 - (1.0 - base_tau) * (math.cos(math.pi * epoch / max(epochs, 1)) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- tau * target + (1 - tau) * online`` for parameters; buffers (BatchNorm
    statistics) are copied, as the target runs in train mode on batch statistics."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o.detach(), 1.0 - tau)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


@torch.no_grad()
def copy_weights(target: nn.Module, online: nn.Module) -> None:
    """The target starts as the online network."""
    ema_update(target, online, 0.0)
