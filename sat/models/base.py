"""What every zoo model offers beyond its logits (timm's names)."""

from __future__ import annotations

import torch
from torch import nn

from sat.config import trust

trust.kind_base("model", nn.Module)  # any network of a trusted package


class Classifier(nn.Module):
    """A backbone's pooled features (:meth:`forward_features`, what self-supervised methods
    train) read by one linear layer (:meth:`get_classifier`); a subclass gives both, and
    keeps its own module names (checkpoints hold them)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_classifier(self) -> nn.Linear:
        raise NotImplementedError

    @property
    def num_features(self) -> int:
        return self.get_classifier().in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_classifier()(self.forward_features(x))
