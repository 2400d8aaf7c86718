"""A plug-in for sat: your own model and dataset, used by name from the command line.

    cd examples/plugin
    PYTHONPATH=. python ../../train.py model._target_=myplug.TinyNet dataset._target_=myplug.Stripes \
        +dataset.num_train=600 trainer.epochs=20 device=cpu ...

(see README.md beside this package). Nothing in sat is edited: a model is any
``nn.Module`` built as ``Cls(num_classes, input_shape, **your_args)``; a dataset is a
``sat.data.datasets.DataSource`` whose ``load()`` returns ``DatasetSplits``; a method is a
``sat.methods.base.Method`` (``myplug.selc.SELC``).
"""

from __future__ import annotations

import torch
from torch import nn

from sat.data.datasets import DatasetSplits, DataSource, ImageSet


class TinyNet(nn.Module):
    """One hidden layer on the flattened image. ``width``: hidden units."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], width: int = 32):
        super().__init__()
        c, h, w = input_shape
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width), nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Stripes(DataSource):
    """8x8 grey images of a bright horizontal stripe; the class is the stripe's row (0-3),
    plus pixel noise. Made up here, so it needs no download."""

    def __init__(self, num_train: int = 600, num_test: int = 200, val_size: int = 100, seed: int = 0):
        self.name, self.num_classes, self.input_shape = "stripes", 4, (1, 8, 8)
        self.num_train, self.num_test, self.val_size, self.seed = num_train, num_test, val_size, seed

    def _sample(self, n: int, g: torch.Generator) -> ImageSet:
        labels = torch.randint(self.num_classes, (n,), generator=g)
        images = 40 * torch.rand(n, 1, 8, 8, generator=g)
        images[torch.arange(n), 0, 2 * labels] += 200  # the stripe
        return ImageSet(images.clamp(0, 255).to(torch.uint8), labels, torch.arange(n))

    def load(self) -> DatasetSplits:
        g = torch.Generator().manual_seed(self.seed)
        train, test = self._sample(self.num_train, g), self._sample(self.num_test, g)
        return DatasetSplits(self.name, train, test, self.num_classes, (0.2,), (0.3,), self.val_size,
                             [(c + 1) % self.num_classes for c in range(self.num_classes)])


class NotAModel:
    """Not an nn.Module: sat refuses to rebuild it from a checkpoint even in a trusted package."""
