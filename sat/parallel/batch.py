"""How a training step sees the global batch it is part of.

In one process a step's batch *is* the global batch, and every call here is the
identity. Under DDP (:class:`ShardedBatch`) each process holds one
contiguous shard of the global batch, in rank order, and these calls make what a step
computes over the batch global: per-sample state (SAT's soft targets) is updated from
every shard's samples, batch-level normalisations use the whole batch, and random
draws cover the whole batch, so a DDP run computes what a single process would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from sat.parallel.group import Distributed


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

    def gather_with_grad(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` (one per sample of this process's shard) over the whole global batch, in
        batch order, with the gradient of every process's loss flowing back to the rows
        this process gave: a loss over the global batch (SimCLR's negatives) computed from
        :meth:`local` queries then sums, over the processes, to the single-process loss."""
        return rows

    def local(self, rows: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor with one row per sample of the global batch."""
        return rows

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the processes (for statistics; not differentiable)."""
        return values

    def min(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` the smallest over the processes, elementwise."""
        return values

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like this process's batch ``x``, drawn for the
        whole global batch: every process's generator advances alike, and the rows
        are the ones a single process would have drawn for these samples."""
        return torch.randn_like(x)


WHOLE_BATCH = GlobalBatch()


class ShardedBatch(GlobalBatch):
    """:class:`GlobalBatch` across the processes of ``group``: each holds the shard
    ``sizes()[rank]`` of the current global batch (contiguous, in rank order), as the
    loader reports it for the batch it handed out last."""

    def __init__(self, group: Distributed, sizes: Callable[[], Sequence[int]]):
        self.rank, self.world_size, self._sizes = group.rank, group.world_size, sizes

    def total(self, local_size: int) -> int:
        return sum(self._sizes())

    def gather(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not tensors:
            return ()
        sizes = list(self._sizes())
        mine = sizes[self.rank]
        for t in tensors:
            if len(t) != mine:
                raise ValueError(f"gather: {len(t)} rows, but this process's shard has {mine} samples")
        # One collective for all tensors: their rows as raw bytes side by side (exact
        # for every dtype), padded to the largest shard (all_gather needs equal sizes).
        rows = [t.detach().reshape(mine, -1).contiguous() for t in tensors]
        raw = [r.view(torch.uint8) if r.dtype != torch.bool else r.to(torch.uint8) for r in rows]
        packed = torch.cat(raw, dim=1)
        cap = max(sizes)
        if mine < cap:
            packed = torch.cat([packed, packed.new_zeros(cap - mine, packed.shape[1])])
        parts = [torch.empty_like(packed) for _ in range(self.world_size)]
        dist.all_gather(parts, packed)
        whole = torch.cat([part[:n] for part, n in zip(parts, sizes)])
        out, col = [], 0
        for t, r in zip(tensors, raw):
            block = whole[:, col : col + r.shape[1]].contiguous()
            col += r.shape[1]
            value = block.bool() if t.dtype == torch.bool else block.view(t.dtype)
            out.append(value.reshape(len(whole), *t.shape[1:]))
        return tuple(out)

    def gather_with_grad(self, rows: torch.Tensor) -> torch.Tensor:
        from torch.distributed.nn.functional import all_gather  # differentiable: its backward sums the gradients

        sizes = list(self._sizes())
        if len(rows) != sizes[self.rank]:
            raise ValueError(f"gather_with_grad: {len(rows)} rows, but this process's shard has {sizes[self.rank]}")
        cap = max(sizes)  # all_gather needs equal sizes: pad, then cut each part back
        padded = torch.cat([rows, rows.new_zeros(cap - len(rows), *rows.shape[1:])]) if len(rows) < cap else rows
        return torch.cat([part[:n] for part, n in zip(all_gather(padded), sizes)])

    def local(self, rows: torch.Tensor) -> torch.Tensor:
        sizes = self._sizes()
        start = sum(sizes[: self.rank])
        return rows[start : start + sizes[self.rank]]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        values = values.detach().clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def min(self, values: torch.Tensor) -> torch.Tensor:
        values = values.detach().clone()
        dist.all_reduce(values, op=dist.ReduceOp.MIN)
        return values

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        whole = torch.empty((sum(self._sizes()), *x.shape[1:]), dtype=x.dtype, device=x.device,
                            memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return self.local(whole.normal_())


def shard_sizes(batch: int, world_size: int) -> list[int]:
    """How ``torch.tensor_split`` cuts a batch of ``batch`` samples into ``world_size``
    contiguous shards (the first ``batch % world_size`` get one more)."""
    q, r = divmod(batch, world_size)
    return [q + 1 if i < r else q for i in range(world_size)]
