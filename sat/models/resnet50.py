"""torchvision's ImageNet ResNet-50 in the model zoo's contract.

7x7 stride-2 stem, max-pool and bottleneck stages with ``[k, 2k, 4k, 8k]`` inner
channels (``k = width``, 64 standard; outputs 4x that): the Clothing1M / WebVision
model. Built from torchvision's own ``Bottleneck`` and ``_make_layer``, so parameter
names match torchvision's and its ImageNet weights load as they are. torchvision is imported
when one is built, not with this module: every process imports the model zoo (the trusted-class
registry) and torchvision's import costs about 2 s of CPU.

Pretrained weights are never downloaded: ``pretrained=True`` reads ``weights_path`` or
torchvision's file in the torch hub cache, and says how to provide it otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from sat.config.roles import FILE
from sat.config.trust import trusted
from sat.config.validate import positive_int
from sat.errors import UserError
from sat.models._checks import image_shape

BLOCKS = (3, 4, 6, 3)


def hub_files() -> tuple[str, ...]:
    """The file names torchvision's downloader gives the ImageNet weights in <hub>/checkpoints."""
    from torchvision.models import ResNet50_Weights

    return tuple(os.path.basename(w.url) for w in (ResNet50_Weights.IMAGENET1K_V1, ResNet50_Weights.IMAGENET1K_V2))


@trusted("model")
class ResNet50(nn.Module):
    """ResNet-50 for ``num_classes``; takes (N, C, H, W) inputs of any size >= 32.

    ``pretrained``: start from ImageNet weights (the classifier is new unless
    ``num_classes`` is 1000); they need ``width=64`` and 3 channels.
    """

    # Names a file: a config read back from a checkpoint must not choose it (sat.config.trust).
    arg_roles = {"weights_path": (FILE,)}

    def __init__(self, num_classes: int, input_shape: Sequence[int], width: int = 64, pretrained: bool = False,
                 weights_path: str | None = None) -> None:
        width = positive_int("width", width)
        channels = image_shape(input_shape)[0]
        if not isinstance(pretrained, bool):
            raise UserError(key="pretrained", value=pretrained, problem="is not supported", accepted="true, false")
        from torchvision.models.resnet import Bottleneck, ResNet

        # torchvision's ResNet.__init__ fixes the stem at 64 channels; set the state its
        # _make_layer reads and build the same modules at our width instead.
        super().__init__()
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = ResNet._make_layer(self, Bottleneck, width, BLOCKS[0])
        self.layer2 = ResNet._make_layer(self, Bottleneck, 2 * width, BLOCKS[1], stride=2)
        self.layer3 = ResNet._make_layer(self, Bottleneck, 4 * width, BLOCKS[2], stride=2)
        self.layer4 = ResNet._make_layer(self, Bottleneck, 8 * width, BLOCKS[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * Bottleneck.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if pretrained:
            if width != 64 or channels != 3:
                raise UserError(key="pretrained", value=True, problem=f"needs {{.width}}=64 and 3 input channels; got "
                                                                     f"{{.width}}={width}, {channels} channels")
            self._load_imagenet(find_weights(weights_path))

    @property
    def num_features(self) -> int:
        return self.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's forward up to the classifier: the pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))  # torchvision's forward

    def get_classifier(self) -> nn.Module:
        return self.fc

    def _load_imagenet(self, path: Path) -> None:
        state = read_state_dict(path)
        if state.get("fc.weight") is not None and state["fc.weight"].shape != self.fc.weight.shape:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # a new classifier
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise UserError(key="weights_path", value=str(path), problem=f"is not a torchvision ResNet-50 state dict "
                            f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]!r})")


def find_weights(weights_path: str | None) -> Path:
    """The weights file: ``weights_path`` if given, else torchvision's file in the hub cache."""
    if weights_path:
        path = Path(str(weights_path)).expanduser()
        if not path.is_file():
            raise UserError(key="weights_path", value=weights_path, problem="is not a file",
                            accepted=f"a torchvision ResNet-50 state dict (.pth), e.g. {hub_files()[0]}")
        return path
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for name in hub_files():
        if (cache / name).is_file():
            return cache / name
    raise UserError(key="pretrained", value=True, problem=f"but no ResNet-50 weights were found (nothing is "
                    f"downloaded): copy torchvision's {hub_files()[0]} into {cache} (TORCH_HOME) or set "
                    "{.weights_path}=/path/to/it")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file: plain, or under ``state_dict`` / ``model``, with any
    DataParallel ``module.`` prefix removed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise UserError(key="weights_path", value=str(path), problem=f"could not be read: {e}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(key="weights_path", value=str(path), problem="holds no state dict",
                        accepted="a torchvision ResNet-50 .pth")
    return {k.removeprefix("module."): v for k, v in state.items()}
