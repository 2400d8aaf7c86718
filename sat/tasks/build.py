"""The model every task builds the same way: the network a model node names, behind the
input normalisation every model of the framework has (inputs in [0, 1])."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from sat.config.build import USER_CONFIG, StoredConfig, UserConfig
from sat.models import Normalize, with_normalization


def build_model(node: Any, num_classes: int, input_shape: Sequence[int],
                policy: UserConfig | StoredConfig = USER_CONFIG,
                stats: tuple[Sequence[float], Sequence[float]] | None = None) -> nn.Module:
    """The network ``node`` names (through ``policy``: the user's config, or a stored
    one) behind its input normalisation: ``stats`` (the data's mean and std) where known,
    else filled in once the data is loaded (:func:`set_normalization`), so that the model
    and the optimizer over its parameters exist, and are checked, before data is read."""
    net = policy.build(node, "model", "model", num_classes=num_classes, input_shape=tuple(input_shape))
    channels = int(input_shape[0])
    mean, std = stats if stats is not None else ([0.0] * channels, [1.0] * channels)
    return with_normalization(net, tuple(mean), tuple(std))


def set_normalization(modules: Iterable[nn.Module], mean: Sequence[float], std: Sequence[float]) -> None:
    """Give every input normalisation among ``modules`` the data's mean and std."""
    for module in modules:
        if isinstance(module, Normalize):
            module.set_stats(mean, std)
