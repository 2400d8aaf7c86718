"""The one loader: epoch orders, batches, augmentation on the device, exact resume.

Batches come from a *batch source*: :class:`MemoryBatches` slices a uint8 tensor kept
on the training device (a CIFAR training set costs 150 MB there, no host work), and
:class:`sat.data.stream.FileBatches` reads and decodes files in DataLoader workers.
Everything else is this class's, whichever source runs: the seeded order, the shards
of a DDP run, the ``augment`` group's batched augmentation on the device, the position
within an epoch and the state a checkpoint keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch

from sat.data.augment import seed_from

# uint8 (N, C, H, W) batch on the device + the loader's generator -> uint8 or float-in-[0, 1]
# batch, or a tuple of them (views of the same samples, e.g. for self-supervised methods)
Augment = Callable[[torch.Tensor, torch.Generator], "torch.Tensor | tuple[torch.Tensor, ...]"]
Batch = tuple["torch.Tensor | tuple[torch.Tensor, ...]", torch.Tensor, torch.Tensor]


class BatchSource(Protocol):
    """Where a loader's images come from."""

    device: torch.device
    # True: the source can hand out a whole global batch cheaply (it is in memory), so a DDP
    # run augments the global batch and keeps its shard, exactly as one process would
    whole_batches: bool

    def batches(self, requests: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """uint8 (len(r), C, H, W) images on ``device`` for each request ``r`` (split positions), in order."""
        ...

    def close(self) -> None:
        """Release what the source holds open (reader workers)."""
        ...


class MemoryBatches:
    """Images already on the device: a batch is a slice."""

    whole_batches = True

    def __init__(self, images: torch.Tensor) -> None:
        self.images, self.device = images, images.device

    def batches(self, requests: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        return (self.images[r] for r in requests)

    def close(self) -> None:
        pass


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images as floats in [0, 1]; float images (an augmentation's output) as they are."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def _views(x: torch.Tensor | tuple[torch.Tensor, ...], keep: slice | None = None):
    if isinstance(x, tuple):
        return tuple(_views(v, keep) for v in x)
    return to_unit(x if keep is None else x[keep])


class Loader:
    """Yields ``(x, y, index)``: ``x`` float images in [0, 1] on the device (a tuple of
    views when the augmentation gives several), labels, and the samples' positions in
    the split (what SAT's per-sample state is indexed by).

    Its state (generator, and mid-epoch the epoch's order and position) is saved in
    checkpoints, so a run stopped between two batches continues with the next one.

    Under DDP (``world_size`` > 1) every process draws the same permutation and cuts the
    same global batches of ``batch_size``; process ``rank`` gets one contiguous shard of
    each (``shard_sizes`` says how the batch just handed out was split), so every sample
    is seen once per epoch. From memory, augmentation draws for the whole global batch
    and keeps this shard: the processes' generators stay in step and a DDP run equals
    one process. From files, each process reads only its shard and augments it with a
    generator seeded by one draw per batch from the shared one (in step as well, but
    the draws differ from a single process's).
    """

    def __init__(self, source: BatchSource, labels: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 augment: Augment | None = None, drop_last: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.source, self.device = source, source.device
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.rank, self.world_size = rank, world_size
        self.seed = int(seed)
        self.shard_sizes: list[int] = []  # of the global batch handed out last, by rank
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self._order: torch.Tensor | None = None  # this epoch's sample order, while an epoch is under way
        self._position = 0  # batches of it already handed out

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def position(self) -> int:
        """Batches of the current epoch handed out so far (0 between epochs)."""
        return self._position if self._order is not None else 0

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.labels)
        if self._order is None:  # a new epoch (else: continue one restored mid-way)
            self._order = torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle \
                else torch.arange(n, device=self.device)
            self._position = 0
        size = self.batch_size
        batches = [self._order[s : s + size] for s in range(self._position * size, len(self) * size, size)]
        shards = [self._shard(b) for b in batches]
        whole = self.source.whole_batches and self.world_size > 1 and self.augment is not None
        for (index, keep), images in zip(shards, self.source.batches(batches if whole else [i for i, _ in shards])):
            self._position += 1  # before the yield: a state saved after this batch skips it
            yield self._augmented(images, keep if whole else None), self.labels[index], index
        self._order = None

    def _shard(self, batch: torch.Tensor) -> tuple[torch.Tensor, slice]:
        """This process's contiguous part of a global batch: its positions, and where they lie in it."""
        if self.world_size == 1:
            return batch, slice(None)
        sizes = [len(p) for p in batch.tensor_split(self.world_size)]
        start = sum(sizes[: self.rank])
        return batch[start : start + sizes[self.rank]], slice(start, start + sizes[self.rank])

    def _augmented(self, images: torch.Tensor, keep: slice | None):
        """The batch's views: ``images`` is the global batch when ``keep`` is given (memory under DDP)."""
        self.shard_sizes = self._sizes_of_current()
        if self.augment is None:
            return _views(images)
        if self.world_size > 1 and keep is None:  # a shard read from files
            generator = torch.Generator(device=self.device)
            generator.manual_seed(seed_from(self.generator) + self.rank)
            return _views(self.augment(images, generator))
        return _views(self.augment(images, self.generator), keep)

    def _sizes_of_current(self) -> list[int]:
        start = self._position - 1
        count = min(self.batch_size, len(self.labels) - start * self.batch_size)
        q, r = divmod(count, self.world_size)
        return [q + 1 if i < r else q for i in range(self.world_size)]

    def close(self) -> None:
        """Stop the source's reader workers, if any (a run does before it exits)."""
        self.source.close()

    def state_dict(self) -> dict:
        mid_epoch = self._order is not None
        return {"generator": self.generator.get_state(), "order": self._order.cpu() if mid_epoch else None,
                "position": self._position if mid_epoch else 0, "num_samples": len(self.labels)}

    def load_state_dict(self, state: dict) -> None:
        from sat.errors import UserError

        if int(state.get("num_samples", len(self.labels))) != len(self.labels):
            raise UserError(f"resume: the loader state is for {state['num_samples']} samples but the split has "
                            f"{len(self.labels)}; accepted: the run's own dataset")
        self.generator.set_state(state["generator"])
        order = state.get("order")
        self._order = None if order is None else torch.as_tensor(order, dtype=torch.int64).to(self.device)
        self._position = int(state.get("position", 0))


def DeviceLoader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, **kwargs) -> Loader:  # noqa: N802
    """A :class:`Loader` over uint8 images already on their device (tests, benchmarks)."""
    return Loader(MemoryBatches(images), labels, batch_size, **kwargs)
