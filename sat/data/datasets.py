"""Datasets as uint8 tensors: CIFAR-10/100 (real on-disk format), scikit-learn's
bundled digits (no download) and a synthetic generator (tests).

Every loader returns a :class:`DatasetSplits`; the Hydra node for a dataset is one of
the ``load_*`` functions here with its arguments.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sat.data.noise import CIFAR10_ASYMMETRIC, MNIST_ASYMMETRIC, cyclic_asymmetric_map, superclass_asymmetric_map
from sat.errors import UserError


@dataclass
class ImageSet:
    """Labelled images: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, holdout: int) -> tuple["ImageSet", "ImageSet"]:
        """The first ``len - holdout`` samples and the last ``holdout``."""
        if not 0 <= holdout < len(self):
            raise UserError(f"dataset.val_size={holdout} is out of range; accepted: 0 <= val_size < {len(self)}")
        cut = len(self) - holdout
        return (ImageSet(self.images[:cut], self.labels[:cut]), ImageSet(self.images[cut:], self.labels[cut:]))


@dataclass
class DatasetSplits:
    """A dataset's train and test sets plus what models and noise need to know."""

    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int
    mean: tuple[float, ...]  # per channel, for inputs in [0, 1]
    std: tuple[float, ...]
    val_size: int = 0  # the last ``val_size`` training samples are held out for validation
    asymmetric_map: list[int] = field(default_factory=list)  # class -> class for asymmetric noise

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.double().div_(255)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


# --- CIFAR ---------------------------------------------------------------------------

_CIFAR = {
    "cifar10": dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    label_key="labels", num_classes=10,
                    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test=["test"], label_key="fine_labels",
                     num_classes=100, mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}


def _read_cifar_batches(folder: Path, files: list[str], label_key: str) -> tuple[ImageSet, list[int]]:
    images, labels, coarse = [], [], []
    for name in files:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[label_key])
        coarse.extend(batch.get("coarse_labels", []))
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)), coarse


def _download_cifar(name: str, root: Path) -> None:
    """torchvision downloads and md5-verifies the archive; we read the files ourselves."""
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        cls(str(root), train=True, download=True)
    except Exception as e:  # no network, bad checksum, ...
        raise UserError(f"could not download {name} into {root}: {e}") from e


def load_cifar(name: str = "cifar10", root: str = "data", download: bool = False, val_size: int = 5000) -> DatasetSplits:
    """CIFAR-10/100 from the python pickle batches torchvision downloads."""
    if name not in _CIFAR:
        raise UserError(f"dataset.name={name!r} is not a CIFAR dataset; accepted: {', '.join(_CIFAR)}")
    spec, root = _CIFAR[name], Path(root).expanduser()
    folder = root / spec["folder"]
    missing = [f for f in spec["train"] + spec["test"] if not (folder / f).is_file()]
    if missing and download:
        _download_cifar(name, root)
    elif missing:
        raise UserError(
            f"{name} not found in {folder.resolve()} (dataset.root={root}); set dataset.download=true to fetch it, "
            f"point dataset.root (or SAT_DATA_DIR) at a copy, or try the embedded data: python train.py experiment=quickstart"
        )
    train, coarse = _read_cifar_batches(folder, spec["train"], spec["label_key"])
    test, _ = _read_cifar_batches(folder, spec["test"], spec["label_key"])
    if name == "cifar10":
        asym = list(CIFAR10_ASYMMETRIC)
    else:
        fine_to_coarse = [0] * spec["num_classes"]
        for fine, c in zip(train.labels.tolist(), coarse):
            fine_to_coarse[fine] = c
        asym = superclass_asymmetric_map(fine_to_coarse)
    return DatasetSplits(name, train, test, spec["num_classes"], spec["mean"], spec["std"], val_size, asym)


# --- scikit-learn digits (embedded, no download) ------------------------------------


def load_digits(test_size: int = 497, val_size: int = 200, split_seed: int = 0) -> DatasetSplits:
    """The 1,797 8x8 grey-scale digits bundled with scikit-learn, as 1x8x8 uint8 images.

    The train/test split is a fixed permutation (``split_seed``), independent of the
    run's seed, so every run sees the same test set.
    """
    from sklearn.datasets import load_digits as sk_digits

    data = sk_digits()
    images = torch.from_numpy(np.round(data.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(data.target.astype(np.int64))
    if not 0 < test_size < len(labels):
        raise UserError(f"dataset.test_size={test_size} is out of range; accepted: 0 < test_size < {len(labels)}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
    images, labels = images[order], labels[order]
    cut = len(labels) - test_size
    train, test = ImageSet(images[:cut], labels[:cut]), ImageSet(images[cut:], labels[cut:])
    mean, std = _channel_stats(train.images)
    return DatasetSplits("digits", train, test, 10, mean, std, val_size, list(MNIST_ASYMMETRIC))


# --- synthetic (tests, smoke runs) --------------------------------------------------


def load_synthetic(
    num_train: int = 512, num_test: int = 256, num_classes: int = 4, channels: int = 3, size: int = 8,
    val_size: int = 64, seed: int = 0,
) -> DatasetSplits:
    """Learnable random data: each class is a fixed random template plus pixel noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, channels, size, size, generator=g) * 255

    def sample(n: int) -> ImageSet:
        labels = torch.randint(num_classes, (n,), generator=g)
        x = templates[labels] + 40 * torch.randn(n, channels, size, size, generator=g)
        return ImageSet(x.clamp(0, 255).round().to(torch.uint8), labels)

    train, test = sample(num_train), sample(num_test)
    mean, std = _channel_stats(train.images)
    return DatasetSplits("synthetic", train, test, num_classes, mean, std, val_size, cyclic_asymmetric_map(num_classes))
