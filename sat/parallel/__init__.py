"""Several processes, one run: the process group (``group``), how a step sees the global
batch it is part of (``batch``), and the DDP step (``step``)."""

from sat.parallel.batch import WHOLE_BATCH, GlobalBatch, ShardedBatch, shard_sizes
from sat.parallel.group import SINGLE, Distributed, setup

__all__ = ["SINGLE", "WHOLE_BATCH", "Distributed", "GlobalBatch", "ShardedBatch", "setup", "shard_sizes"]
