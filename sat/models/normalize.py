"""Input normalisation as the first layer, so every model takes images in [0, 1].

Keeping the normalisation inside the model means attacks (whose epsilon is in
pixel units) and checkpoints work the same for every dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sat.errors import UserError


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; mean and std are saved with the model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        if len(mean) != len(std) or not mean:
            raise UserError(f"normalisation mean {mean} and std {std} must be non-empty and of equal length")
        if min(std) <= 0:
            raise UserError(f"normalisation std {std} must be positive")
        # Shaped (1, C, 1, 1) to broadcast over (N, C, H, W) in any memory format.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Fill in the data's statistics once they are known (the model is built first)."""
        other = Normalize(mean, std)
        if other.mean.shape != self.mean.shape:
            raise UserError(f"normalisation for {self.mean.numel()} channels got statistics of {other.mean.numel()}")
        self.mean.copy_(other.mean)
        self.std.copy_(other.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def with_normalization(net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """``net`` preceded by :class:`Normalize`, i.e. a model taking [0, 1] inputs."""
    return nn.Sequential(Normalize(mean, std), net)
