"""Folder datasets (Clothing1M, Food-101N, ANIMAL-10N, WebVision, any image folder with
label lists) in a run: decoded once onto the device when they fit (then they are plain
tensors and train like CIFAR), streamed from disk through DataLoader workers when not."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from sat.data.datasets import DatasetSplits, ImageSet
from sat.data.folder import FileSplit, FolderDataset
from sat.data.loader_choice import choose_loader
from sat.data.noise import Noise, NoisePattern
from sat.data.stream import decode_split
from sat.data.transforms import eval_transform


def loader_kind(data: FolderDataset, device: torch.device) -> str:
    train, val = data.train_val()
    total = len(train) + (len(val) if val is not None else 0) + len(data.test)
    return choose_loader(data.loader, total, data.input_shape, device)


def as_tensors(data: FolderDataset) -> DatasetSplits:
    """Every split decoded once (the evaluation view) into uint8 tensors; the validation
    split goes last in the training set, where a run holds out its tail."""
    train, val = data.train_val()
    view = eval_transform(data.image_size, data.resize)

    def decoded(split: FileSplit) -> ImageSet:
        return ImageSet(decode_split(split, view, num_workers=data.num_workers), split.labels, split.ids)

    parts = [decoded(train)] + ([decoded(val)] if val is not None else [])
    joined = ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                      torch.cat([p.ids for p in parts]))
    return DatasetSplits(data.name, joined, decoded(data.test), data.num_classes, tuple(data.mean), tuple(data.std),
                         len(val) if val is not None else 0, list(data.asymmetric_map))


def identity(name: str, split: FileSplit) -> dict[str, Any]:
    """What a noise pattern of this training split records (see DatasetSplits.identity)."""
    h = hashlib.sha256(split.labels.numpy().tobytes())
    h.update(split.ids.numpy().tobytes())
    return {"dataset": name, "num_samples": len(split), "labels_sha256": h.hexdigest()}


@dataclass
class StreamData:
    """A streamed folder dataset after label noise (the same role as NoisyData)."""

    data: FolderDataset
    pattern: NoisePattern
    train: FileSplit  # with the given (noisy) labels
    val: FileSplit | None
    true_train_labels: torch.Tensor | None  # the clean labels, where all are known

    def noise_summary(self) -> dict[str, Any]:
        wrong = None if self.true_train_labels is None else int((self.train.labels != self.true_train_labels).sum())
        return {"kind": self.pattern.kind, "rate": self.pattern.rate, "seed": self.pattern.seed,
                "realised_error": self.pattern.realised_error(self.train_clean) if self.true_train_labels is not None
                else float("nan"),
                "num_noisy": wrong, "num_train": len(self.train),
                "val": {"num_samples": len(self.val) if self.val is not None else 0}, "sha256": self.pattern.sha256()}

    @property
    def train_clean(self) -> torch.Tensor:
        return self.true_train_labels if self.true_train_labels is not None else self.train.labels


def stream_data(data: FolderDataset, noise: Noise, pattern: NoisePattern | None = None) -> StreamData:
    """Label noise on the training split (a streamed dataset has no image noise): drawn,
    or a given pattern of this split. The dataset's own labels count as clean unless a
    clean-label list says otherwise; with clean labels known for some samples only
    (Clothing1M), no memorisation metrics are computed."""
    train, val = data.train_val()
    ident = identity(data.name, train)
    if pattern is None:
        pattern = noise.draw(None, train.labels, data.num_classes, class_map=torch.tensor(data.asymmetric_map),
                             mean=data.mean, std=data.std, dataset=ident)
    else:
        pattern.check_dataset(ident, "the run's noise.pt")
    _, labels = pattern.apply(None, train.labels)
    clean = train.labels
    if train.clean_labels is not None:
        clean = train.clean_labels if bool((train.clean_labels >= 0).all()) else None
    return StreamData(data, pattern, train.with_labels(labels), val, clean)
