"""How a training step sees the global batch it is part of.

In one process a step's batch *is* the global batch, and every call here is the
identity. Under DDP (:class:`sat.distributed.ShardedBatch`) each process holds one
contiguous shard of the global batch, in rank order, and these calls make what a step
computes over the batch global: per-sample state (SAT's soft targets) is updated from
every shard's samples, batch-level normalisations use the whole batch, and random
draws cover the whole batch, so a DDP run computes what a single process would.
"""

from __future__ import annotations

import torch


class GlobalBatch:
    """The single-process view (the methods' default, see ``Method.global_batch``)."""

    world_size: int = 1

    def total(self, local_size: int) -> int:
        """Samples in the global batch, given this process's ``local_size``."""
        return local_size

    def gather(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each tensor (one row per sample of this process's shard) over the whole
        global batch, in batch order, detached: e.g. ``index, prob = gather(index, prob)``
        before updating per-sample state, so that every process updates it alike."""
        return tuple(t.detach() for t in tensors)

    def local(self, rows: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor with one row per sample of the global batch."""
        return rows

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the processes (for statistics; not differentiable)."""
        return values

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like this process's batch ``x``, drawn for the
        whole global batch: every process's generator advances alike, and the rows
        are the ones a single process would have drawn for these samples."""
        return torch.randn_like(x)


WHOLE_BATCH = GlobalBatch()
