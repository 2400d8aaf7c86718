"""Model zoo. Every model is ``Cls(num_classes, input_shape=(C, H, W), **args)`` with an
int ``width`` and returns logits; wrap it with :func:`with_normalization` to take [0, 1] inputs.
Each also has timm's ``forward_features(x)`` (the pooled features), ``num_features`` and
``get_classifier()`` (the linear layer on them), which self-supervised methods use."""

from torch import nn

from sat.models.airbench import AirbenchNet
from sat.models.normalize import Normalize, with_normalization
from sat.models.resnet import PreActResNet, ResNet
from sat.models.small import MLP, SmallCNN
from sat.models.wrn import WideResNet


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "AirbenchNet",
    "MLP",
    "Normalize",
    "PreActResNet",
    "ResNet",
    "SmallCNN",
    "WideResNet",
    "count_parameters",
    "with_normalization",
]
