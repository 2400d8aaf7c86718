"""Wide ResNet (Zagoruyko & Komodakis, 2016) as in the TRADES / SAT reference code.

Three groups of pre-activation blocks with ``[16w, 32w, 64w]`` channels after a
16-channel stem; ``(depth - 4) / 6`` blocks per group. Unlike TRADES' WRN-34-10 it
has no unused ``sub_block1``, so parameter counts are the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sat.config.trust import trusted
from sat.config.validate import positive_int
from sat.errors import UserError
from sat.models._checks import image_shape
from sat.models.base import Classifier


class WideBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-(dropout)-conv plus shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if c_in != c_out:  # the stride changes only together with the width here
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # As in the reference, a projection shortcut takes the pre-activated input.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = F.relu(self.bn2(self.conv1(out)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + shortcut


@trusted("model", "sat.models.WideResNet")
class WideResNet(Classifier):
    """WRN-``depth``-``width``: e.g. WRN-28-10 (36.5M params) and WRN-34-10 (46.2M)."""

    def __init__(
        self, num_classes: int, input_shape: Sequence[int], depth: int = 28, width: int = 10, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
            raise UserError(key="depth", value=depth, problem="is not supported",
                            accepted="{key} >= 10 with ({key} - 4) % 6 == 0, e.g. 16, 22, 28, 34")
        width = positive_int("width", width)
        if not 0.0 <= dropout < 1.0:
            raise UserError(key="dropout", value=dropout, problem="is out of range", accepted="0 <= {key} < 1")
        n = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]

        self.conv1 = nn.Conv2d(image_shape(input_shape)[0], channels[0], 3, padding=1, bias=False)
        blocks, c_in = [], channels[0]
        for i, c_out in enumerate(channels[1:]):
            for j in range(n):
                blocks.append(WideBlock(c_in, c_out, stride=2 if (i > 0 and j == 0) else 1, dropout=dropout))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # The reference's init: He-normal convs (fan-out), unit BN, zero linear bias.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def get_classifier(self) -> nn.Module:
        return self.fc
