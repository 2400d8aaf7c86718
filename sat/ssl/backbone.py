"""A zoo model seen as backbone + classifier.

Training builds every model as ``Sequential(Normalize, net)`` (inputs in [0, 1]), maybe
inside ``torch.compile``; ``net`` has ``forward_features`` / ``get_classifier`` (see
:mod:`sat.models`). Self-supervised methods train the backbone and use the classifier,
on detached features, as the online linear probe.
"""

from __future__ import annotations

import torch
from torch import nn

from sat.errors import UserError


def _parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
    if isinstance(model, nn.Sequential) and len(model) == 2 and hasattr(model[1], "forward_features"):
        return model[0], model[1]
    if hasattr(model, "forward_features"):
        return nn.Identity(), model
    raise UserError(f"the model {type(model).__name__} has no forward_features(): self-supervised methods and "
                    "representation reports need a zoo model (sat.models) or one with forward_features, "
                    "num_features and get_classifier")


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pooled features (N, num_features) of [0, 1] images ``x``."""
    normalize, net = _parts(model)
    return net.forward_features(normalize(x))


def classifier(model: nn.Module) -> nn.Module:
    """The linear layer the model's logits come from (the probe, for SSL methods)."""
    return _parts(model)[1].get_classifier()


def num_features(model: nn.Module) -> int:
    return int(_parts(model)[1].num_features)


@torch.no_grad()
def extract(model: nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, labels)`` of every batch of ``loader`` (a split's loader: in order, no
    augmentation), in eval mode: any split, in memory or streamed from files."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    for x, y, _ in loader:
        feats.append(features(model, x).float())
        labels.append(y)
    model.train(was_training)
    if not feats:
        return torch.empty(0, num_features(model), device=loader.device), torch.empty(0, dtype=torch.int64)
    return torch.cat(feats), torch.cat(labels)
