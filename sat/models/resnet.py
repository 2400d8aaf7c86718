"""CIFAR-style ResNet and pre-activation ResNet (kuangliu/pytorch-cifar layout).

3x3 stride-1 stem and no max-pool, so 32x32 inputs keep their resolution in the
first stage; four stages with ``[k, 2k, 4k, 8k]`` channels for ``k = width``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sat.config.trust import trusted
from sat.config.validate import positive_int
from sat.errors import UserError
from sat.models._checks import image_shape
from sat.models.base import Classifier

# Blocks per stage for each supported depth (BasicBlock only).
_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed (or preceded) by BatchNorm.
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _stage_blocks(depth: int) -> tuple[int, ...]:
    if depth not in _BLOCKS:
        accepted = ", ".join(str(d) for d in _BLOCKS)
        raise UserError(key="depth", value=depth, problem="is not supported", accepted=accepted)
    return _BLOCKS[depth]


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:  # projection only where the shape changes
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv plus shortcut (He et al., 2016, identity mappings)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection sees the pre-activated input, as in the reference.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


def _make_stages(block: type[nn.Module], blocks: Sequence[int], width: int) -> tuple[nn.Sequential, int]:
    """The four stages; returns them and the number of output channels."""
    layers, c_in = [], width
    for i, n in enumerate(blocks):
        c_out = width * 2**i
        for j in range(n):
            layers.append(block(c_in, c_out, stride=2 if (i > 0 and j == 0) else 1))
            c_in = c_out
    return nn.Sequential(*layers), c_in


@trusted("model", "sat.models.ResNet")
class ResNet(Classifier):
    """CIFAR ResNet-18/34; ``width`` is the first stage's channel count (64 standard)."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], depth: int = 18, width: int = 64) -> None:
        super().__init__()
        blocks = _stage_blocks(depth)
        width = positive_int("width", width)
        channels = image_shape(input_shape)[0]
        self.conv1 = _conv3x3(channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.layers, c_out = _make_stages(BasicBlock, blocks, width)
        self.linear = nn.Linear(c_out, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the classifier reads (self-supervised methods train these)."""
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        # Global average pool instead of a fixed 4x4 pool: works for any input size.
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def get_classifier(self) -> nn.Module:
        return self.linear


@trusted("model", "sat.models.PreActResNet")
class PreActResNet(Classifier):
    """Pre-activation CIFAR ResNet-18/34 (kuangliu layout: no BN-ReLU after the last block)."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], depth: int = 18, width: int = 64) -> None:
        super().__init__()
        blocks = _stage_blocks(depth)
        width = positive_int("width", width)
        channels = image_shape(input_shape)[0]
        self.conv1 = _conv3x3(channels, width)  # pre-activation: the first block normalises it
        self.layers, c_out = _make_stages(PreActBlock, blocks, width)
        self.linear = nn.Linear(c_out, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.layers(self.conv1(x)), 1), 1)

    def get_classifier(self) -> nn.Module:
        return self.linear
