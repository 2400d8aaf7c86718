"""STL-10 (Coates, Ng & Lee 2011) from its binary release, ``stl10_binary/``.

``train_X.bin`` / ``test_X.bin`` / ``unlabeled_X.bin``: uint8 images of 3x96x96, each
stored channel by channel and column-major (as the MATLAB release: transpose to get
rows); ``train_y.bin`` / ``test_y.bin``: one uint8 label per image, 1-10.

Self-supervised runs train on the 100,000 unlabeled images and the 5,000 labelled ones
(``unlabeled=true``); the unlabeled images carry label -1, which the methods' online
probe ignores. They come first, so that ``val_size`` holds out labelled images. Sample
ids: the labelled training images 0-4,999 in file order, the unlabeled ones 5,000 on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sat.config import validate
from sat.config.roles import FILE, PER_PROCESS
from sat.config.trust import trusted
from sat.data.class_maps import cyclic_asymmetric_map
from sat.data.datasets import DatasetSplits, DataSource, ImageSet
from sat.errors import UserError

SHAPE = (3, 96, 96)
FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
UNLABELED = "unlabeled_X.bin"
UNLABELED_LABEL = -1
LAYOUT = ("the binary release: uint8 images of 3x96x96, each channel column-major, and uint8 labels 1-10 "
          "(https://cs.stanford.edu/~acoates/stl10/)")


# The release's image counts: no file of it holds more (an 11 GB sparse unlabeled_X.bin is not STL-10).
RELEASE_IMAGES = {"train_X.bin": 5000, "test_X.bin": 8000, UNLABELED: 100_000}
IMAGE_BYTES = int(np.prod(SHAPE))


def read_images(path: Path) -> torch.Tensor:
    """uint8 (N, 3, 96, 96) images, rows first, from a ``*_X.bin`` file (its size checked
    against the release's before it is read)."""
    size, most = path.stat().st_size, RELEASE_IMAGES.get(path.name, 100_000)
    if size % IMAGE_BYTES:
        raise UserError(f"{path} holds {size} bytes, not a whole number of 3x96x96 images; expected {LAYOUT}")
    if size > most * IMAGE_BYTES:
        raise UserError(f"{path} holds {size // IMAGE_BYTES:,} images, more than the release's {most:,}; expected "
                        f"{LAYOUT}")
    raw = np.fromfile(path, dtype=np.uint8)
    return torch.from_numpy(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2).copy())


def read_labels(path: Path, count: int) -> torch.Tensor:
    """int64 labels 0-9 from a ``*_y.bin`` file of labels 1-10 for ``count`` images."""
    size = path.stat().st_size  # one byte a label: checked before the file is read
    if size != count:
        raise UserError(f"{path} holds {size} labels for {count} images; expected {LAYOUT}")
    raw = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if raw.size and (raw.min() < 1 or raw.max() > 10):
        raise UserError(f"{path} has labels outside 1-10 ({raw.min()}-{raw.max()}); expected {LAYOUT}")
    return torch.from_numpy(raw - 1)


def _channel_stats(images: torch.Tensor, chunk: int = 1000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1], in chunks (the whole set in float64 would be GBs)."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start: start + chunk].double().div_(255)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    n = max(len(images) * SHAPE[1] * SHAPE[2], 1)
    mean = total / n
    return tuple(mean.tolist()), tuple((squares / n - mean.square()).clamp_min(0).sqrt().tolist())


@trusted("dataset")
class STL10(DataSource):
    arg_roles = {"root": (FILE, PER_PROCESS)}

    def __init__(self, root: str = "data", unlabeled: bool = True, val_size: int = 0):
        self.root = Path(str(root)).expanduser()
        self.unlabeled = validate.flag("unlabeled", unlabeled)
        self.unlabeled_by = "unlabeled" if self.unlabeled else None
        self.val_size = validate.number("val_size", val_size, lo=0, integer=True)
        self.name, self.num_classes, self.input_shape = "stl10", 10, SHAPE

    def memory_bytes(self) -> int:
        """The image files' sizes, twice (each is read, then transposed into a copy)."""
        folder = self.root / "stl10_binary"
        names = ("train_X.bin", "test_X.bin") + ((UNLABELED,) if self.unlabeled else ())
        return 2 * sum((folder / n).stat().st_size for n in names if (folder / n).is_file())

    def load(self) -> DatasetSplits:
        folder = self.root / "stl10_binary"
        wanted = FILES + ((UNLABELED,) if self.unlabeled else ())
        missing = [f for f in wanted if not (folder / f).is_file()]
        if missing:
            raise UserError(f"STL-10 not found: {folder.resolve()} lacks {', '.join(missing)}; expected "
                            f"{folder}/{{{','.join(wanted)}}}, {LAYOUT} ({{key}}={self.root})", key="root")
        train_x = read_images(folder / "train_X.bin")
        train = ImageSet(train_x, read_labels(folder / "train_y.bin", len(train_x)), torch.arange(len(train_x)))
        test_x = read_images(folder / "test_X.bin")
        test = ImageSet(test_x, read_labels(folder / "test_y.bin", len(test_x)), torch.arange(len(test_x)))
        mean, std = _channel_stats(train.images)
        if self.unlabeled:
            extra = read_images(folder / UNLABELED)
            train = ImageSet(torch.cat([extra, train.images]),
                             torch.cat([torch.full((len(extra),), UNLABELED_LABEL, dtype=torch.int64), train.labels]),
                             torch.cat([len(train_x) + torch.arange(len(extra)), train.ids]))
        if self.val_size > int((train.labels >= 0).sum()) - 1:
            raise UserError(key="val_size", value=self.val_size, problem="is out of range",
                            accepted=f"0 <= {{key}} < {int((train.labels >= 0).sum())} (the labelled training images)")
        return DatasetSplits("stl10", train, test, 10, mean, std, self.val_size, cyclic_asymmetric_map(10))
