"""Several processes, one run: the process group (``group``), how a step sees the global
batch it is part of (``batch``), and the DDP step (``step``). Names are imported on first
use, so that :mod:`sat.parallel.identity` (which process writes) costs no torch import."""

from importlib import import_module
from typing import Any

_WHERE = {"WHOLE_BATCH": "batch", "GlobalBatch": "batch", "ShardedBatch": "batch", "shard_sizes": "batch",
          "SINGLE": "group", "Distributed": "group", "setup": "group"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
