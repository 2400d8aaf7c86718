"""The one flattener of configs: ``{"method": {"alpha": 0.9}}`` -> ``{"method.alpha": 0.9}``.

Lists stay values (a list is one setting: ``scheduler.milestones``), and so does an
empty node (``{}``); what a reader needs beyond that (text for TensorBoard, JSON for a
table) it makes from these values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of a nested, plain config by its dotted key."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
