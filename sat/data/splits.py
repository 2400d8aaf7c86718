"""A split: labelled samples that know their ids and make their own loader.

Two kinds, one interface. An :class:`ImageSet` holds its images in memory (uint8
tensors: CIFAR, digits, SVHN, a folder dataset decoded once); a :class:`FileSplit` is a
list of image files read from disk every epoch (Clothing1M, WebVision). Both give
``len()``, ``labels``, ``ids`` (each sample's id in the dataset's original order, what
exported label errors name), ``subset``/``with_labels``/``tail``/``holdout``, and
``loader(...)``: the device loader over the images in memory, or the streaming loader
over the files; ``in_memory()`` decodes a file split into an ImageSet. Whoever holds a
split never asks which kind it is.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sat.errors import UserError

HOLDOUT_SALT = 0x5EED_0F_7A11  # see Split.holdout


def _positions(positions: torch.Tensor | Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(positions, dtype=torch.int64)


class Split:
    """What both kinds share; subclasses are frozen dataclasses with ``labels``, ``ids``
    and ``clean_labels`` fields."""

    labels: torch.Tensor  # int64 (N,): the labels a run trains on (given, possibly noisy)
    ids: torch.Tensor  # int64 (N,): ids in the dataset's original order
    clean_labels: torch.Tensor | None  # int64 (N,) true labels where they differ from ``labels``' source, -1 unknown

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def true_labels(self) -> torch.Tensor | None:
        """The clean labels when every one is known (a dataset's own labels count as
        clean unless it names a clean-label list), else None."""
        if self.clean_labels is None:
            return self.labels
        return self.clean_labels if bool((self.clean_labels >= 0).all()) else None

    def with_labels(self, labels: torch.Tensor) -> Split:
        """The same samples with other labels (noise drawn by the run); the labels they
        had count as the clean ones from now on."""
        labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
        if len(labels) != len(self):
            raise UserError(f"got {len(labels)} labels for a split of {len(self)} samples; accepted: one per sample")
        clean = self.labels if self.clean_labels is None else self.clean_labels
        return replace(self, labels=labels, clean_labels=clean)

    def streamed(self, settings: StreamSettings) -> Split:
        """This split read with ``settings`` when it streams from files (images in memory: itself)."""
        return self

    def tail(self, size: int) -> tuple[Split, Split]:
        """The first ``len - size`` samples and the last ``size`` (CIFAR's validation tail)."""
        if not 0 <= size < len(self):
            raise UserError(key="size", value=size, problem="is out of range", accepted=f"0 <= {{key}} < {len(self)}")
        cut = len(self) - size
        return self.subset(torch.arange(cut)), self.subset(torch.arange(cut, len(self)))

    def holdout(self, size: int, seed: int) -> tuple[Split, Split]:
        """A seeded random ``size`` samples held out, and the rest (both in their order):
        for lists sorted by class, whose tail would be a few classes only. The seed is
        salted: noise drawn with the same seed picks its samples from ``randperm`` too, and
        must not pick the validation samples."""
        if not 0 <= size < len(self):
            raise UserError(key="size", value=size, problem="is out of range", accepted=f"0 <= {{key}} < {len(self)}")
        chosen = torch.zeros(len(self), dtype=torch.bool)
        generator = torch.Generator().manual_seed((int(seed) ^ HOLDOUT_SALT) & (2**63 - 1))
        chosen[torch.randperm(len(self), generator=generator)[:size]] = True
        positions = torch.arange(len(self))
        return self.subset(positions[~chosen]), self.subset(positions[chosen])

    def subset(self, positions: torch.Tensor | Sequence[int]) -> Split:
        raise NotImplementedError

    def file_names(self) -> list[str] | None:
        """Each sample's file, relative to the dataset root (None: the samples are no files)."""
        files = getattr(self, "files", None)
        return None if files is None else [f.decode() for f in files]

    def identity(self, name: str) -> dict[str, Any]:
        """What a noise pattern drawn for this split must match: the dataset's name, the
        size and a hash of the labels and ids in their order (which also pins the split)."""
        h = hashlib.sha256(self.labels.numpy().tobytes())
        h.update(self.ids.numpy().tobytes())
        return {"dataset": name, "num_samples": len(self), "labels_sha256": h.hexdigest()}


@dataclass(frozen=True, eq=False)  # eq: tensor fields have no single truth value
class ImageSet(Split):
    """Labelled images in memory: ``images`` uint8 (N, C, H, W), ``labels`` and ``ids``
    int64 (N,) (CIFAR: the position in the original batches; digits: scikit-learn's
    index; a decoded folder dataset: the line of its list file)."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor
    clean_labels: torch.Tensor | None = None
    files: np.ndarray | None = None  # a decoded file split's paths, kept to name its samples

    def __post_init__(self) -> None:
        if not (len(self.images) == len(self.labels) == len(self.ids)):
            raise ValueError(f"{len(self.images)} images, {len(self.labels)} labels and {len(self.ids)} ids")

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, positions: torch.Tensor | Sequence[int]) -> ImageSet:
        p = _positions(positions)
        return replace(self, images=self.images[p], labels=self.labels[p], ids=self.ids[p],
                       clean_labels=None if self.clean_labels is None else self.clean_labels[p],
                       files=None if self.files is None else self.files[p.numpy()])

    def with_images(self, images: torch.Tensor) -> ImageSet:
        """The same samples with other images (image noise drawn by the run)."""
        return replace(self, images=images)

    def in_memory(self) -> ImageSet:
        return self

    def describe(self, position: int) -> str:
        ident = f"id {int(self.ids[position])}"
        return ident if self.files is None else f"{ident} {self.files[position].decode()}"

    def loader(self, batch_size: int, *, device: torch.device | str = "cpu", shuffle: bool = False, augment=None,
               seed: int = 0, rank: int = 0, world_size: int = 1):
        from sat.data.loader import Loader, MemoryBatches

        return Loader(MemoryBatches(self.images.to(device)), self.labels, batch_size, shuffle=shuffle,
                      augment=augment, seed=seed, rank=rank, world_size=world_size)


@dataclass(frozen=True)
class FileReading:
    """How a file split's images become model inputs (the dataset's choice): decoded as
    RGB, the shorter side resized to ``resize``, a centre crop of ``image_size`` (the one
    view every loader gives; training augmentation is the ``augment`` group's, on the
    device)."""

    image_size: int = 224
    resize: int = 256


@dataclass(frozen=True)
class StreamSettings:
    """How a streaming loader reads a file split (the ``loader`` node's speed settings:
    they never change results). ``num_workers``: DataLoader workers (``auto``: one per
    available core but one, at most 8); ``decode``: ``auto`` | ``cpu`` | ``cuda``
    (nvJPEG)."""

    num_workers: int | str = 0  # the loader node says auto
    decode: str = "auto"
    persistent_workers: bool = True
    prefetch_factor: int = 2

    @property
    def workers(self) -> int:
        if self.num_workers == "auto":
            return max(0, min(8, available_cores() - 1))
        return int(self.num_workers)


def available_cores() -> int:
    """CPU cores this process may use (a Slurm or cgroup allocation, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, eq=False)
class FileSplit(Split):
    """``len(self)`` image files under ``root`` with labels and ids (the 0-based line
    in ``source``, the list file or folder they come from).

    ``files`` is a numpy array of fixed-width bytes, not a Python list: DataLoader
    workers share it without the copy-on-write growth a million Python strings cause.
    """

    root: Path
    files: np.ndarray  # dtype bytes (S*), paths relative to ``root``
    labels: torch.Tensor
    ids: torch.Tensor
    source: str
    clean_labels: torch.Tensor | None = None  # -1 where unknown (Clothing1M's clean subset)
    reading: FileReading = FileReading()
    streaming: StreamSettings = StreamSettings()

    def __post_init__(self) -> None:
        n = len(self.files)
        if len(self.labels) != n or len(self.ids) != n or (self.clean_labels is not None and len(self.clean_labels) != n):
            raise ValueError(f"{self.source}: {n} files but {len(self.labels)} labels and {len(self.ids)} ids")

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (3, self.reading.image_size, self.reading.image_size)

    def file(self, position: int) -> str:
        """The path of sample ``position`` relative to ``root``."""
        return self.files[position].decode()

    def path(self, position: int) -> Path:
        return self.root / self.file(position)

    def subset(self, positions: torch.Tensor | Sequence[int]) -> FileSplit:
        p = _positions(positions)
        return replace(self, files=self.files[p.numpy()], labels=self.labels[p], ids=self.ids[p],
                       clean_labels=None if self.clean_labels is None else self.clean_labels[p])

    def with_reading(self, reading: FileReading) -> FileSplit:
        return replace(self, reading=reading)

    def streamed(self, settings: StreamSettings) -> FileSplit:
        return replace(self, streaming=settings)

    def describe(self, position: int) -> str:
        """``source:line path`` of one sample (what a label-error report shows)."""
        return f"{self.source}:{int(self.ids[position]) + 1} {self.file(position)}"

    def in_memory(self) -> ImageSet:
        """Every image decoded once (the evaluation view), as an ImageSet."""
        from sat.data.stream import decode_all

        return ImageSet(decode_all(self), self.labels, self.ids, self.clean_labels, self.files)

    def loader(self, batch_size: int, *, device: torch.device | str = "cpu", shuffle: bool = False, augment=None,
               seed: int = 0, rank: int = 0, world_size: int = 1):
        from sat.data.loader import Loader
        from sat.data.stream import FileBatches

        return Loader(FileBatches(self, device), self.labels, batch_size, shuffle=shuffle, augment=augment, seed=seed,
                      rank=rank, world_size=world_size)


def nbytes(splits: Sequence[Split | None]) -> int:
    """Bytes of the splits' uint8 images once decoded (what a device must hold)."""
    total = 0
    for split in splits:
        if split is not None:
            c, h, w = split.sample_shape
            total += len(split) * c * h * w
    return total
