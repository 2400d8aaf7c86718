"""A small, fast CIFAR network in the style of airbench (Jordan, 2024, "94% on CIFAR-10 in 3.29 seconds
on a single GPU"): a 2x2 conv stem and three groups of conv - max-pool - BN - GELU - conv - BN - GELU, each
halving the resolution, then a global max pool and a linear layer. It is chosen for the CPU: at width 32
(32/64/128 channels, 0.3M parameters) a training step costs about 50 MFLOP an image, a few hundred times less
than ResNet-34, and every conv sees at most 32x32 pixels. airbench's speed tricks that need data or a custom
optimiser (whitening stem initialised from patches, frozen BN scales, look-ahead, TTA) are left out, so the
model is an ordinary ``nn.Module`` trained by any method of the framework.
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


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)  # no bias: BN follows


class ConvGroup(nn.Module):
    """conv - 2x2 max-pool - BN - GELU - conv - BN - GELU (airbench's ConvGroup): pooling right after the
    first conv makes the second one, and everything after, four times cheaper."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.norm1 = _conv(c_in, c_out), nn.BatchNorm2d(c_out)
        self.conv2, self.norm2 = _conv(c_out, c_out), nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 2, ceil_mode=True)  # ceil_mode: small or odd sizes (8x8 digits) still pool
        x = F.gelu(self.norm1(x))
        return F.gelu(self.norm2(self.conv2(x)))


@trusted("model")
class AirbenchNet(Classifier):
    """Stem (2x2 conv, ``2 * 3 * 4 = 24`` channels for RGB, as airbench), then groups of
    ``width * multipliers`` channels, global max pool, linear. ``width=64, multipliers=[1, 4, 4]`` is
    airbench94's 64/256/256 net (2.0M parameters); the default ``width=32, [1, 2, 4]`` (32/64/128, 0.3M) is
    the CPU preset's (experiment=cifar10_cpu)."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], width: int = 32,
                 multipliers: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        width = positive_int("width", width)
        if isinstance(multipliers, (str, bytes)) or not isinstance(multipliers, Sequence) or not multipliers or \
                any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in multipliers):
            raise UserError(key="multipliers", value=multipliers, problem="is not supported",
                            accepted="a non-empty list of integers >= 1 (channels of each group, times width)")
        channels = image_shape(input_shape)[0]
        stem = 2 * channels * 4  # airbench: 2 * C * kernel**2 (a whitening conv's +/- pairs)
        self.stem = nn.Conv2d(channels, stem, 2, padding=0)
        widths = [stem] + [width * m for m in multipliers]
        self.groups = nn.Sequential(*(ConvGroup(a, b) for a, b in zip(widths, widths[1:])))
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the classifier reads (self-supervised methods train these)."""
        x = self.groups(F.gelu(self.stem(x)))
        return torch.amax(x, dim=(2, 3))  # global max pool (airbench: MaxPool2d(3) of the last 3x3 map)

    def get_classifier(self) -> nn.Module:
        return self.fc
