"""Datasets as uint8 tensors: CIFAR-10/100 (real on-disk format), scikit-learn's
bundled digits (no download) and a synthetic generator (tests).

A dataset config node builds a :class:`DataSource`: cheap to construct (it checks its
arguments and knows the number of classes and the image shape), it reads its files
only in :meth:`DataSource.load`. So a run checks every setting and builds its model
before minutes go into loading data.
"""

from __future__ import annotations

import importlib.util
import io
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from sat.config import trust, validate
from sat.config.roles import FILE, NEUTRAL, PER_PROCESS
from sat.config.trust import trusted
from sat.data.class_maps import CIFAR10_ASYMMETRIC, MNIST_ASYMMETRIC, cyclic_asymmetric_map, superclass_asymmetric_map
from sat.data.splits import ImageSet, Split  # ImageSet: re-exported for dataset plugins
from sat.errors import UserError
from sat.run.budget import images_bytes


@dataclass
class DatasetSplits:
    """A dataset's splits plus what models and noise need to know.

    ``train`` is the training pool: noise is drawn over all of it, then the validation
    split is held out of it (so validation labels are as noisy as training labels, as
    they would be in practice): its last ``val_size`` samples, or ``val_size`` seeded
    random ones when ``holdout_seed`` is set (lists sorted by class). A dataset with a
    validation list of its own gives it as ``val`` (Clothing1M's clean one) instead.
    """

    name: str
    train: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]  # per channel, for inputs in [0, 1]
    std: tuple[float, ...]
    val_size: int = 0
    asymmetric_map: list[int] = field(default_factory=list)  # class -> class for asymmetric noise
    val: Split | None = None
    holdout_seed: int | None = None
    class_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.sample_shape)

    def identity(self) -> dict[str, Any]:
        """What a noise pattern drawn for this training pool must match."""
        return self.train.identity(self.name)

    def splits(self) -> list[Split]:
        return [s for s in (self.train, self.val, self.test) if s is not None]


class DataSource:
    """What a dataset config node builds. Subclasses set ``name``, ``num_classes`` and
    ``input_shape`` from their arguments and read the data in :meth:`load`."""

    # What the constructor's arguments are to a run besides their values (sat.config.roles):
    # files are never chosen by a config read back from a checkpoint (sat.config.trust).
    arg_roles: ClassVar[dict[str, tuple[str, ...]]] = {}
    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    val_size: int
    # The argument that adds training images without labels (label -1), when it does
    # (STL-10's ``unlabeled``): only a method that takes them can train on this source.
    unlabeled_by: str | None = None

    def load(self) -> DatasetSplits:
        raise NotImplementedError

    def memory_bytes(self) -> int | None:
        """The bytes :meth:`load` will hold, known from the settings or the files' headers
        and sizes before reading (None: not known before reading)."""
        return None


trust.kind_base("dataset", DataSource)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.double().div_(255)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


def _val_size(value: Any) -> int:
    return validate.number("val_size", value, lo=0, integer=True)


# --- CIFAR ---------------------------------------------------------------------------

_CIFAR = {
    "cifar10": dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    label_key="labels", num_classes=10,
                    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test=["test"], label_key="fine_labels",
                     num_classes=100, mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}


def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _BatchUnpickler(pickle.Unpickler):
    """Reads a CIFAR batch (a dict of lists, strings and numpy arrays) and refuses every
    other object: a pickle naming any other class or function runs nothing. An array it
    makes holds at most the file's own bytes: numpy's ``_reconstruct`` (or ``ndarray``
    called directly) allocates whatever shape the file claims, uninitialised, before any
    data is read (a 650 KB batch claimed 1.47 GB)."""

    def __init__(self, file: Any, *, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.max_bytes = max_bytes

    def _bounded(self, make: Any) -> Any:
        def checked(subtype: Any, shape: Any, dtype: Any = float, *args: Any) -> Any:
            try:
                dims = (shape,) if isinstance(shape, int) else tuple(shape)
                claimed = math.prod(int(d) for d in dims) * np.dtype(dtype).itemsize
            except (TypeError, ValueError, OverflowError):
                raise pickle.UnpicklingError(f"an array of shape {shape!r}, dtype {dtype!r}") from None
            if claimed > self.max_bytes or any(int(d) < 0 for d in dims):
                raise pickle.UnpicklingError(f"an array of {claimed:,} bytes claimed by a file of {self.max_bytes:,}")
            plain = isinstance(subtype, type) and issubclass(subtype, _BoundedArray)
            return make(np.ndarray if plain else subtype, shape, dtype, *args)
        return checked

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): lambda: self._bounded(_numpy_reconstruct()),
            ("numpy._core.multiarray", "_reconstruct"): lambda: self._bounded(_numpy_reconstruct()),
            ("numpy", "ndarray"): lambda: _BoundedArray.bounded_by(self),
            ("numpy", "dtype"): lambda: np.dtype,
            ("_codecs", "encode"): lambda: __import__("codecs").encode,  # bytes, as Python 3 writes protocol 2
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return allowed[(module, name)]()


class _BoundedArray(np.ndarray):
    """``numpy.ndarray`` as a CIFAR pickle may name it: the type ``_reconstruct`` is given,
    and, called directly, an array no larger than the file (see :class:`_BatchUnpickler`)."""

    unpickler: _BatchUnpickler | None = None

    @classmethod
    def bounded_by(cls, unpickler: _BatchUnpickler) -> type:
        return type("ndarray", (cls,), {"unpickler": unpickler})

    def __new__(cls, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> Any:
        assert cls.unpickler is not None
        return cls.unpickler._bounded(lambda _, *a: np.ndarray(*a))(cls, shape, dtype, *args)


def read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR python batch file, keys as strings, without running code from it."""
    try:
        batch = _BatchUnpickler(io.BytesIO(path.read_bytes()), max_bytes=path.stat().st_size,
                                encoding="latin1").load()
    except Exception as e:
        raise UserError(f"{path} is not a CIFAR batch file ({type(e).__name__}: {e}); replace it with the original "
                        "({key}=true fetches it)", key="download") from None
    if not isinstance(batch, dict):
        raise UserError(f"{path} is not a CIFAR batch file (it holds a {type(batch).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _read_cifar_batches(folder: Path, files: list[str], label_key: str) -> tuple[ImageSet, list[int]]:
    images, labels, coarse = [], [], []
    for name in files:
        batch = read_batch(folder / name)
        try:
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(int(v) for v in batch[label_key])
            coarse.extend(int(v) for v in batch.get("coarse_labels", []))
        except (KeyError, ValueError, TypeError, OverflowError) as e:
            raise UserError(f"{folder / name} is not a CIFAR batch file ({type(e).__name__}: {e})") from None
    x = torch.from_numpy(np.concatenate(images))
    if any(not -2**63 <= v < 2**63 for v in labels):
        raise UserError(f"{folder}: a label of {', '.join(files)} is out of any class range; is it a CIFAR batch?")
    y = torch.tensor(labels, dtype=torch.int64)
    if len(x) != len(y):
        raise UserError(f"{folder}: {len(x)} images but {len(y)} labels in {', '.join(files)}")
    return ImageSet(x, y, torch.arange(len(y))), coarse


def _download_cifar(name: str, root: Path) -> None:
    """torchvision downloads and md5-verifies the archive; we read the files ourselves."""
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        cls(str(root), train=True, download=True)
    except Exception as e:  # no network, bad checksum, ...
        raise UserError(f"could not download {name} into {{key}}={root}: {e}", key="root") from e


@trusted("dataset")
class CIFAR(DataSource):
    """CIFAR-10/100 from the python pickle batches torchvision downloads."""

    arg_roles = {"root": (FILE, PER_PROCESS), "download": (FILE, NEUTRAL, PER_PROCESS)}

    def __init__(self, name: str = "cifar10", root: str = "data", download: bool = False, val_size: int = 5000,
                 num_train: int | None = None):
        """``num_train``: keep only the first ``num_train`` images of the training batches (ids
        0..num_train-1, the validation tail included; null: all of them), for runs sized to a CPU."""
        validate.choice("name", name, _CIFAR)
        self.name, self.root, self.val_size = name, Path(str(root)).expanduser(), _val_size(val_size)
        self.download = validate.flag("download", download)
        self.num_train = None if num_train is None else validate.positive_int("num_train", num_train)
        self.num_classes, self.input_shape = _CIFAR[name]["num_classes"], (3, 32, 32)

    def memory_bytes(self) -> int:
        """The batch files' sizes: their pickled pixels are what the arrays hold (a file's
        array claiming more is refused while it is read), or the images' size before they are there."""
        spec = _CIFAR[self.name]
        folder = self.root / spec["folder"]
        files = sum((folder / f).stat().st_size for f in spec["train"] + spec["test"] if (folder / f).is_file())
        # without the files (a sweep checked where the data is not), the 60,000 images they hold
        return files or images_bytes(60_000, self.input_shape)

    def load(self) -> DatasetSplits:
        spec = _CIFAR[self.name]
        folder = self.root / spec["folder"]
        missing = [f for f in spec["train"] + spec["test"] if not (folder / f).is_file()]
        if missing and self.download:
            _download_cifar(self.name, self.root)
        elif missing:
            raise UserError(
                f"{self.name} not found in {folder.resolve()} ({{key}}={self.root}); set {{.download}}=true to "
                "fetch it, point {key} (or SAT_DATA_DIR) at a copy, or try the embedded data: "
                "python train.py experiment=quickstart", key="root")
        train, coarse = _read_cifar_batches(folder, spec["train"], spec["label_key"])
        test, _ = _read_cifar_batches(folder, spec["test"], spec["label_key"])
        for split, s in (("train", train), ("test", test)):
            if len(s) and (int(s.labels.min()) < 0 or int(s.labels.max()) >= self.num_classes):
                raise UserError(f"{folder}: {split} labels outside [0, {self.num_classes}); is it {self.name}?")
        if self.name == "cifar10":
            asym = list(CIFAR10_ASYMMETRIC)
        else:
            fine_to_coarse = [0] * spec["num_classes"]
            for fine, c in zip(train.labels.tolist(), coarse):
                fine_to_coarse[fine] = c
            asym = superclass_asymmetric_map(fine_to_coarse)
        if self.num_train is not None:  # after the class map, which needs every class's super-class
            if self.num_train > len(train):
                raise UserError(f"dataset.num_train={self.num_train} is out of range: {folder} holds {len(train)} "
                                f"training images; accepted: 1 <= num_train <= {len(train)}, or null (all)")
            train = train.subset(torch.arange(self.num_train))
        return DatasetSplits(self.name, train, test, spec["num_classes"], spec["mean"], spec["std"], self.val_size, asym)


# --- scikit-learn digits (embedded, no download) ------------------------------------


@trusted("dataset")
class Digits(DataSource):
    """The 1,797 8x8 grey-scale digits bundled with scikit-learn, as 1x8x8 uint8 images.

    The train/test split is a fixed permutation (``split_seed``), independent of the
    run's seed, so every run sees the same test set.
    """

    TOTAL = 1797

    def __init__(self, test_size: int = 497, val_size: int = 200, split_seed: int = 0):
        self.test_size = validate.number("test_size", test_size, lo=1, hi=self.TOTAL - 1, integer=True)
        self.val_size = validate.number("val_size", val_size, lo=0, hi=self.TOTAL - self.test_size - 1,
                                        integer=True)
        self.split_seed = validate.number("split_seed", split_seed, integer=True)
        self.name, self.num_classes, self.input_shape = "digits", 10, (1, 8, 8)

    def memory_bytes(self) -> int:
        return images_bytes(self.TOTAL, self.input_shape)

    def load(self) -> DatasetSplits:
        pixels, target = _bundled_digits()
        images = torch.from_numpy(np.round(pixels * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(target.astype(np.int64))
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
        cut = len(labels) - self.test_size
        train = ImageSet(images[order[:cut]], labels[order[:cut]], order[:cut].clone())
        test = ImageSet(images[order[cut:]], labels[order[cut:]], order[cut:].clone())
        mean, std = _channel_stats(train.images)
        return DatasetSplits("digits", train, test, 10, mean, std, self.val_size, list(MNIST_ASYMMETRIC))


def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits, images (1797, 8, 8) of values 0..16 and targets: the
    file ``load_digits`` reads, read without importing scikit-learn (2 s of every process
    start, as much as the rest of a 2-epoch test run); ``load_digits`` where the file is
    not at its usual place."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        data = load_digits()
        return data.images, data.target
    rows = np.loadtxt(path, delimiter=",")
    return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(np.int64)


# --- synthetic (tests, smoke runs) --------------------------------------------------


@trusted("dataset")
class Synthetic(DataSource):
    """Learnable random data: each class is a fixed random template plus pixel noise."""

    def __init__(self, num_train: int = 512, num_test: int = 256, num_classes: int = 4, channels: int = 3,
                 size: int = 8, val_size: int = 64, seed: int = 0):
        self.num_train = validate.positive_int("num_train", num_train)
        self.num_test = validate.positive_int("num_test", num_test)
        self.num_classes = validate.number("num_classes", num_classes, lo=2, integer=True)
        channels, size = validate.positive_int("channels", channels), validate.positive_int("size", size)
        self.val_size = validate.number("val_size", val_size, lo=0, hi=self.num_train - 1, integer=True)
        self.seed = validate.number("seed", seed, integer=True)
        self.name, self.input_shape = "synthetic", (channels, size, size)

    def memory_bytes(self) -> int:
        # drawn as float32, kept as uint8
        return images_bytes(self.num_train + self.num_test, self.input_shape, bytes_per_value=4 + 1)

    def load(self) -> DatasetSplits:
        g = torch.Generator().manual_seed(self.seed)
        templates = torch.rand(self.num_classes, *self.input_shape, generator=g) * 255

        def sample(n: int) -> ImageSet:
            labels = torch.randint(self.num_classes, (n,), generator=g)
            x = templates[labels] + 40 * torch.randn(n, *self.input_shape, generator=g)
            return ImageSet(x.clamp(0, 255).round().to(torch.uint8), labels, torch.arange(n))

        train, test = sample(self.num_train), sample(self.num_test)
        mean, std = _channel_stats(train.images)
        return DatasetSplits("synthetic", train, test, self.num_classes, mean, std, self.val_size,
                             cyclic_asymmetric_map(self.num_classes))
