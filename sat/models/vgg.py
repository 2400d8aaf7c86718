"""VGG with batch norm and dropout for small images: the selective-classification
backbone of SelectiveNet, Deep Gamblers and SAT-selective (their ``vgg16_bn``).

Five stages of 3x3 convolutions with ``[w, 2w, 4w, 8w, 8w]`` channels for ``w = width``
(64: the standard VGG), each stage ending in a 2x2 max-pool. As in the reference:
conv (with bias) -> ReLU -> BatchNorm (this order, which the reference kept to match
the baseline it compared with), channel dropout after every conv that is not the last
of its stage (0.3 in the first stage, 0.4 later), dropout 0.5 on the features, then a
classifier ``Linear(8w * h * w, 8w) -> ReLU -> BatchNorm1d -> Dropout(0.5) -> Linear``.

A pool is applied only while the feature map is at least 2x2, so 8x8 digits work too
(three pools, then none); 32x32 inputs end at 1x1 (512 features at width 64), 64x64
inputs at 2x2 (2,048), as the reference's two classifier sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sat.config.trust import trusted
from sat.config.validate import positive_int
from sat.errors import UserError
from sat.models._checks import image_shape
from sat.models.base import Classifier

# Convolutions per stage for each depth (Simonyan & Zisserman configurations A, B, D, E).
_CONVS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_STAGE_WIDTH = (1, 2, 4, 8, 8)  # channels of each stage, in units of ``width``


def _stage_convs(depth: int) -> tuple[int, ...]:
    if isinstance(depth, bool) or depth not in _CONVS:
        accepted = ", ".join(str(d) for d in _CONVS)
        raise UserError(key="depth", value=depth, problem="is not supported", accepted=accepted)
    return _CONVS[depth]


@trusted("model")
class VGG(Classifier):
    """VGG-``depth`` with BN for inputs of any size >= 1x1; ``width`` = channels of the
    first stage (64 standard; 15.0M parameters at depth 16 with 10 classes)."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], depth: int = 16, width: int = 64) -> None:
        super().__init__()
        width = positive_int("width", width)
        channels, h, w = image_shape(input_shape)
        layers: list[nn.Module] = []
        c_in = channels
        for stage, (convs, factor) in enumerate(zip(_stage_convs(depth), _STAGE_WIDTH)):
            c_out = width * factor
            for j in range(convs):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out)]
                if j < convs - 1:  # the last conv of a stage goes straight to the pool
                    layers.append(nn.Dropout2d(0.3 if stage == 0 else 0.4))
                c_in = c_out
            if min(h, w) >= 2:  # a 1-pixel map has nothing left to pool
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
        layers.append(nn.Dropout2d(0.5))
        self.features = nn.Sequential(*layers)
        hidden = 8 * width
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * h * w, hidden),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(hidden),
            nn.Dropout(0.5),  # the reference's Dropout2d on a (N, C) input drops single units: plain dropout
            nn.Linear(hidden, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """The reference's initialisation: He-normal (fan-out) convs, N(0, 0.01) linears,
        zero biases, BN at identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden layer's output (what the last linear layer reads)."""
        return self.classifier[:-1](self.features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
