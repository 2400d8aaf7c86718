"""From a dataset to what a run trains on: the loader's kind, noise, the validation split.

One path for every dataset: :func:`prepare` decides whether the images are held on the
device (files are then decoded once) or streamed, draws the noise over the training
pool (or replays a saved pattern of it), holds out the validation split and leaves out
the training samples a pattern of cleaned labels removes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sat.config import validate
from sat.data.datasets import DatasetSplits, DataSource
from sat.data.noise import Noise, NoisePattern
from sat.data.splits import ImageSet, Split, StreamSettings, nbytes
from sat.errors import UserError

LOADERS = ("auto", "device", "stream")
CPU_LIMIT_BYTES = 4 * 2**30  # on the CPU the "device" is host memory: keep a modest cap
CUDA_SHARE = 0.25  # the rest is for the model, activations and the allocator


def device_limit_bytes(device: torch.device) -> int:
    """How many bytes of uint8 images ``loader.kind=auto`` keeps on ``device``."""
    if device.type == "cuda":
        return int(CUDA_SHARE * torch.cuda.get_device_properties(device).total_memory)
    return CPU_LIMIT_BYTES


def choose_loader(loader_kind: str, data: DatasetSplits, device: torch.device | str,
                  limit_bytes: int | None = None) -> str:
    """``device`` (every image held on the training device: fastest) or ``stream`` (read
    from disk every epoch: any size). ``auto``: ``device`` when the decoded images fit
    in a share of the device's memory, and always for data already in memory."""
    validate.choice("loader_kind", loader_kind, LOADERS)
    if all(isinstance(s, ImageSet) for s in data.splits()):
        return "device"
    if loader_kind != "auto":
        return loader_kind
    limit = device_limit_bytes(torch.device(device)) if limit_bytes is None else limit_bytes
    return "device" if nbytes(data.splits()) <= limit else "stream"


@dataclass
class TrainingData:
    """A dataset after noise and the validation split."""

    data: DatasetSplits
    pattern: NoisePattern
    loader_kind: str  # device | stream
    train: Split  # what the model trains on (given labels)
    val: Split | None
    test: Split

    @property
    def true_train_labels(self) -> torch.Tensor | None:
        """The labels before noise, aligned with ``train`` (None where not all are known: Clothing1M)."""
        return self.train.true_labels

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def noise_summary(self) -> dict[str, Any]:
        """The noise as realised, each population under its own heading: the training
        split and the validation split."""
        def count(split: Split | None) -> dict[str, Any]:
            if split is None:
                return {"num_samples": 0, "num_noisy": 0, "realised_error": 0.0}
            true = split.true_labels
            wrong = None if true is None else int((split.labels != true).sum())
            error = float("nan") if wrong is None else wrong / max(len(split), 1)
            return {"num_samples": len(split), "num_noisy": wrong, "realised_error": error}

        train = count(self.train)
        cleaned = {} if self.pattern.source is None else {  # where cleaned labels came from
            "source": self.pattern.source, "removed": 0 if self.pattern.removed is None else len(self.pattern.removed)}
        return {"kind": self.pattern.kind, "rate": self.pattern.rate, "seed": self.pattern.seed,
                "realised_error": train["realised_error"], "num_noisy": train["num_noisy"],
                "num_train": train["num_samples"], "val": count(self.val), "sha256": self.pattern.sha256(), **cleaned}


def load(source: DataSource) -> DatasetSplits:
    """``source.load()``, checked against what the config said it would hold. Refusals
    name the source's arguments (``val_size=``)."""
    data = source.load()
    if data.num_classes != source.num_classes or tuple(data.input_shape) != tuple(source.input_shape):
        raise UserError(f"dataset {source.name}: the files hold {data.num_classes} classes of shape "
                        f"{tuple(data.input_shape)}, the config says {source.num_classes} of {tuple(source.input_shape)}")
    if data.val is None and not 0 <= data.val_size < len(data.train):
        raise UserError(key="val_size", value=data.val_size, problem="is out of range",
                        accepted=f"0 <= {{key}} < {len(data.train)} (the training images)")
    return data


def prepare(data: DatasetSplits, noise: Noise | None, device: torch.device | str, *,
            pattern: NoisePattern | None = None, loader_kind: str = "auto",
            streaming: StreamSettings | None = None) -> TrainingData:
    """The data a run trains on. ``noise`` is drawn from its seeded config, or ``pattern``
    (a saved one, which must be of this training pool) is replayed; ``loader_kind``:
    ``device``, ``stream`` or ``auto`` (:func:`choose_loader`; a restored run gives the
    kind the run itself had); ``streaming``: how file splits are read (workers)."""
    kind = choose_loader(loader_kind, data, device)
    streaming = streaming or StreamSettings()
    train, test, val = (None if s is None else s.streamed(streaming) for s in (data.train, data.test, data.val))
    if kind == "device":
        train, test = train.in_memory(), test.in_memory()
        val = val.in_memory() if val is not None else None
    identity = data.identity()
    images = train.images if isinstance(train, ImageSet) else None
    if pattern is None:
        assert noise is not None
        with validate.argument("noise"):  # the noise's refusals name noise.<its argument>
            pattern = noise.draw(images, train.labels, data.num_classes, class_map=torch.tensor(data.asymmetric_map),
                                 mean=data.mean, std=data.std, dataset=identity)
    else:
        pattern.check_dataset(identity, "the run's noise.pt")
    from_file = getattr(noise, "from_file", None)
    pattern.check_labels(data.num_classes, f"noise.from_file={from_file}" if from_file else "the run's noise.pt")
    new_images, labels = pattern.apply(images, train.labels)
    if new_images is not None and new_images is not images:
        train = train.with_images(new_images)
    if not torch.equal(labels, train.labels):
        train = train.with_labels(labels)
    if val is None and data.val_size:
        train, val = train.tail(data.val_size) if data.holdout_seed is None else \
            train.holdout(data.val_size, data.holdout_seed)
    if pattern.removed is not None and len(pattern.removed):  # cleaned labels: after the holdout, which keeps its own
        train = train.subset(torch.nonzero(~torch.isin(train.ids, pattern.removed)).flatten())
    return TrainingData(data, pattern, kind, train, val, test)
