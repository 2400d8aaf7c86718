"""A data loader that keeps the whole dataset on the training device.

Batches are slices of an on-device permutation; images stay uint8 until the batch is
cut, so a CIFAR training set costs 150 MB of device memory and no host round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class DeviceLoader:
    """Yields ``(x, y, index)``: float images in [0, 1], labels, and dataset indices
    (SAT's per-sample state is indexed by them)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        augment: Augment | None = None,
        drop_last: bool = False,
        seed: int = 0,
    ):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.generator = torch.Generator(device=images.device).manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        n, device = len(self.labels), self.images.device
        order = torch.randperm(n, device=device, generator=self.generator) if self.shuffle else torch.arange(n, device=device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            x = self.images[index]
            if self.augment is not None:
                x = self.augment(x, self.generator)
            yield x.float().div_(255), self.labels[index], index

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
