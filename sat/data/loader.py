"""A data loader that keeps the whole dataset on the training device.

Batches are slices of an on-device permutation; images stay uint8 until the batch is
cut, so a CIFAR training set costs 150 MB of device memory and no host round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _as_float(x):
    """A uint8 batch as floats in [0, 1]; an augmentation's views (a tuple) each so (SSL methods)."""
    if isinstance(x, tuple):
        return tuple(v.float().div(255) if v.dtype == torch.uint8 else v for v in x)
    return x.float().div_(255) if x.dtype == torch.uint8 else x


class DeviceLoader:
    """Yields ``(x, y, index)``: float images in [0, 1], labels, and dataset indices
    (SAT's per-sample state is indexed by them).

    Its state (generator, and mid-epoch the epoch's order and position) is saved in
    checkpoints, so a run stopped between two batches continues with the next one.

    Under DDP (``world_size`` > 1) every process draws the same permutation and cuts the
    same global batches of ``batch_size``; process ``rank`` gets one contiguous shard of
    each (``shard_sizes`` says how the batch just handed out was split), so every sample
    is seen once per epoch. Augmentation draws for the whole global batch, which keeps
    the processes' generators in step (and the state rank 0 saves valid for all).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        augment: Augment | None = None,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.rank, self.world_size = rank, world_size
        self.shard_sizes: list[int] = []  # of the global batch handed out last, by rank
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.generator = torch.Generator(device=images.device).manual_seed(seed)
        self._order: torch.Tensor | None = None  # this epoch's sample order, while an epoch is under way
        self._position = 0  # batches of it already handed out

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def position(self) -> int:
        """Batches of the current epoch handed out so far (0 between epochs)."""
        return self._position if self._order is not None else 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        n, device = len(self.labels), self.images.device
        if self._order is None:  # a new epoch (else: continue one restored mid-way)
            self._order = torch.randperm(n, device=device, generator=self.generator) if self.shuffle \
                else torch.arange(n, device=device)
            self._position = 0
        while self._position < len(self):
            start = self._position * self.batch_size
            index = self._order[start : start + self.batch_size]
            if self.world_size > 1:
                index, x = self._shard(index)
            else:
                self.shard_sizes = [len(index)]
                x = self.images[index]
                if self.augment is not None:
                    x = self.augment(x, self.generator)
            self._position += 1
            yield _as_float(x), self.labels[index], index
        self._order = None

    def _shard(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's contiguous part of a global batch (its dataset indices and images)."""
        parts = index.tensor_split(self.world_size)
        self.shard_sizes = [len(p) for p in parts]
        start = sum(self.shard_sizes[: self.rank])
        stop = start + self.shard_sizes[self.rank]
        if self.augment is None:
            return parts[self.rank], self.images[parts[self.rank]]
        x = self.augment(self.images[index], self.generator)
        return parts[self.rank], tuple(v[start:stop] for v in x) if isinstance(x, tuple) else x[start:stop]

    def state_dict(self) -> dict:
        mid_epoch = self._order is not None
        return {"generator": self.generator.get_state(), "order": self._order.cpu() if mid_epoch else None,
                "position": self._position if mid_epoch else 0}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        order = state.get("order")
        self._order = None if order is None else order.to(self.images.device)
        self._position = int(state.get("position", 0))
