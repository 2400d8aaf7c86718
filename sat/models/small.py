"""Small models for quick runs and double-descent sweeps (8x8 digits, 28x28, 32x32)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sat.config.trust import trusted
from sat.config.validate import positive_int
from sat.models._checks import image_shape
from sat.models.base import Classifier


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


@trusted("model", "sat.models.SmallCNN")
class SmallCNN(Classifier):
    """Three conv-BN-ReLU layers (``w, 2w, 4w`` channels), one 2x2 max-pool, global average pool, linear.

    A single pool keeps 8x8 inputs at 4x4 for the last conv while staying cheap on 32x32.
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], width: int = 32) -> None:
        super().__init__()
        width = positive_int("width", width)
        channels = image_shape(input_shape)[0]
        self.features = nn.Sequential(
            *_conv_bn_relu(channels, width),
            *_conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2, ceil_mode=True),  # ceil_mode: also accepts odd or 1-pixel sizes
            *_conv_bn_relu(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(4 * width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the classifier reads (self-supervised methods train these)."""
        return self.features(x)

    def get_classifier(self) -> nn.Module:
        return self.fc


@trusted("model", "sat.models.MLP")
class MLP(Classifier):
    """Flatten, ``depth`` hidden layers of ``width`` ReLU units, linear output."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], width: int = 128, depth: int = 1) -> None:
        super().__init__()
        width, depth = positive_int("width", width), positive_int("depth", depth)
        layers: list[nn.Module] = [nn.Flatten()]
        c_in = math.prod(image_shape(input_shape))
        for _ in range(depth):
            layers += [nn.Linear(c_in, width), nn.ReLU(inplace=True)]
            c_in = width
        layers.append(nn.Linear(c_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[:-1](x)

    def get_classifier(self) -> nn.Module:
        return self.net[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
