"""SVHN (Street View House Numbers, cropped digits) from torchvision's on-disk format.

``train_32x32.mat`` and ``test_32x32.mat`` (MATLAB files, as torchvision downloads them
into its ``root``) hold ``X`` uint8 (32, 32, 3, N) and ``y`` (N, 1) with labels 1..10,
where 10 stands for the digit 0. They are read as torchvision reads them, with
``scipy.io.loadmat``, into uint8 (N, 3, 32, 32) images and labels 0..9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sat.config import validate
from sat.config.roles import FILE, NEUTRAL, PER_PROCESS
from sat.config.trust import trusted
from sat.data.class_maps import MNIST_ASYMMETRIC
from sat.data.datasets import DatasetSplits, DataSource, ImageSet
from sat.errors import UserError

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _read_mat(path: Path) -> ImageSet:
    from scipy.io import loadmat  # scipy comes with scikit-learn, a dependency

    try:
        mat = loadmat(str(path), variable_names=["X", "y"])
        x, y = mat["X"], mat["y"]
    except Exception as e:  # truncated download, not a .mat file, keys missing
        raise UserError(f"{path} is not an SVHN .mat file (expected X (32,32,3,N) and y (N,1)): {e}") from e
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8 or y.size != x.shape[3]:
        raise UserError(f"{path}: X has shape {x.shape} ({x.dtype}) and y {y.shape}; "
                        "expected X uint8 (32,32,3,N), y (N,1)")
    labels = y.reshape(-1).astype(np.int64) % 10  # SVHN's label 10 is the digit 0 (torchvision: 10 -> 0)
    images = np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)))  # (H, W, C, N) -> (N, C, H, W), as torchvision
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), torch.arange(len(labels)))


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of uint8 images in [0, 1], in float64 chunks:
    SVHN's 73,257 training images would take 1.8 GB as one float64 tensor."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].double().div_(255)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    n = len(images) * images.shape[2] * images.shape[3]
    mean = total / n
    var = (squares - n * mean.square()) / (n - 1)
    return tuple(mean.tolist()), tuple(var.clamp(min=0).sqrt().tolist())


def _download(root: Path) -> None:
    """torchvision downloads and md5-verifies the files; we read them ourselves."""
    import torchvision

    try:
        for split in SVHN_FILES:
            torchvision.datasets.SVHN(str(root), split=split, download=True)
    except Exception as e:  # no network, bad checksum, ...
        raise UserError(f"could not download svhn into {{key}}={root}: {e}", key="root") from e


@trusted("dataset")
class SVHN(DataSource):
    """SVHN's 73,257 training and 26,032 test images (the ``extra`` set is not used).
    ``root`` is the folder holding the ``.mat`` files (torchvision's ``SVHN(root)``).
    The last ``val_size`` training images are held out for validation.
    """

    arg_roles = {"root": (FILE, PER_PROCESS), "download": (FILE, NEUTRAL, PER_PROCESS)}

    def __init__(self, root: str = "data/svhn", download: bool = False, val_size: int = 5000):
        self.root = Path(str(root)).expanduser()
        self.download = validate.flag("download", download)
        self.val_size = validate.number("val_size", val_size, lo=0, integer=True)
        self.name, self.num_classes, self.input_shape = "svhn", 10, (3, 32, 32)

    def load(self) -> DatasetSplits:
        folder = self.root
        missing = [f for f in SVHN_FILES.values() if not (folder / f).is_file()]
        if missing and self.download:
            _download(folder)
        elif missing:
            raise UserError(
                f"svhn not found in {folder.resolve()} (missing {', '.join(missing)}; {{key}}={self.root}); set "
                "{.download}=true to fetch it, or point {key} at a folder with torchvision's SVHN files", key="root")
        train, test = _read_mat(folder / SVHN_FILES["train"]), _read_mat(folder / SVHN_FILES["test"])
        mean, std = channel_stats(train.images)
        return DatasetSplits("svhn", train, test, 10, mean, std, self.val_size, list(MNIST_ASYMMETRIC))
