"""Datasets given as an image folder plus label-list text files.

This is the format of the real-world noisy-label benchmarks (Clothing1M, Food-101N,
ANIMAL-10N, mini-WebVision): images under a root folder and text files of
``relative/path label`` lines, one per split. Nothing is decoded here: a split is a
list of file paths with int64 labels and int64 sample ids, and
:mod:`sat.data.stream` reads the images. The id of a sample is its 0-based line number
in the list file (or its position in the sorted listing of a folder), so per-sample
state and exported label errors can always be traced back to a real file.

The Hydra node of a folder dataset is :class:`ImageFolderSource` (its ``load()`` gives a
:class:`FolderDataset`); each split is described by a :class:`ListSpec` (a plain dict
in the config).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sat.data.transforms import TRAIN_AUGMENTS
from sat.errors import UserError

try:  # the dataset-node base class of the reworked core (sat.tasks builds a DataSource)
    from sat.data.datasets import DataSource
except ImportError:  # before it: any object with the same attributes
    DataSource = object

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
LABEL_SOURCES = ("column", "file", "folder", "name_prefix")
LOADERS = ("auto", "device", "stream")


# --- the value objects -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq: numpy and torch fields have no single truth value
class FileSplit:
    """One split: ``len(self)`` image files under ``root`` with labels and sample ids.

    ``files`` is a numpy array of fixed-width bytes, not a Python list: DataLoader
    workers share it without the copy-on-write growth that a million Python strings
    cause (every access to a Python object writes its reference count).
    """

    root: Path
    files: np.ndarray  # dtype bytes (S*), paths relative to ``root``
    labels: torch.Tensor  # int64 (N,)
    ids: torch.Tensor  # int64 (N,): the line number (0-based) in ``source``
    source: str  # the list file (or folder) the ids refer to, relative to ``root``
    clean_labels: torch.Tensor | None = None  # int64 (N,), -1 where unknown (e.g. Clothing1M's clean subset)

    def __post_init__(self) -> None:
        n = len(self.files)
        if len(self.labels) != n or len(self.ids) != n or (self.clean_labels is not None and len(self.clean_labels) != n):
            raise ValueError(f"{self.source}: {n} files but {len(self.labels)} labels and {len(self.ids)} ids")

    def __len__(self) -> int:
        return len(self.files)

    def file(self, position: int) -> str:
        """The path of sample ``position`` relative to ``root``."""
        return self.files[position].decode()

    def path(self, position: int) -> Path:
        return self.root / self.file(position)

    def subset(self, positions: torch.Tensor | Sequence[int]) -> FileSplit:
        """The samples at ``positions``, in that order (ids are kept)."""
        positions = torch.as_tensor(positions, dtype=torch.int64)
        clean = None if self.clean_labels is None else self.clean_labels[positions]
        return replace(self, files=self.files[positions.numpy()], labels=self.labels[positions],
                       ids=self.ids[positions], clean_labels=clean)

    def with_labels(self, labels: torch.Tensor) -> FileSplit:
        """The same files with other labels (label noise drawn by the run)."""
        labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
        if len(labels) != len(self):
            raise UserError(f"got {len(labels)} labels for {len(self)} files of {self.source}; accepted: one label per file")
        return replace(self, labels=labels)

    def holdout(self, size: int, seed: int = 0) -> tuple[FileSplit, FileSplit]:
        """A seeded random ``size`` samples held out, and the rest (both in list order).

        Random rather than the tail: these lists are often sorted by class, so the tail
        would be a few classes only.
        """
        if not 0 <= size < len(self):
            raise UserError(f"dataset.val_size={size} is out of range; accepted: 0 <= val_size < {len(self)}")
        chosen = torch.zeros(len(self), dtype=torch.bool)
        chosen[torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size]] = True
        positions = torch.arange(len(self))
        return self.subset(positions[~chosen]), self.subset(positions[chosen])

    def describe(self, position: int) -> str:
        """``source:line path`` of one sample (what a label-error report should show)."""
        return f"{self.source}:{int(self.ids[position]) + 1} {self.file(position)}"


@dataclass(frozen=True)
class ListSpec:
    """How to read one split (a dict in the config).

    ``list``: a text file of lines, or a folder whose image files (sorted by name) are
    the lines. ``labels``: where each line's label comes from:

    - ``column``: the last whitespace-separated field (``relative/path 3``);
    - ``file``: looked up by path in ``label_file``, a ``relative/path label`` file
      (Clothing1M: key lists plus ``noisy_label_kv.txt``);
    - ``folder``: the first path component, a class name looked up in the dataset's
      ``classes`` file (Food-101N: ``apple_pie/xxx.jpg``);
    - ``name_prefix``: the integer before the first ``_`` of the file name
      (ANIMAL-10N: ``3_01234.jpg``).

    ``prefix`` / ``suffix`` are added to each listed path to get the file below the
    root; ``header`` lines at the top are skipped; ``clean_labels`` optionally names a
    ``relative/path label`` file of verified labels for some of the samples.
    """

    list: str
    labels: str = "column"
    label_file: str | None = None
    prefix: str = ""
    suffix: str = ""
    header: int = 0
    clean_labels: str | None = None


@dataclass
class FolderDataset:
    """A folder dataset's splits plus what models, noise and loaders need to know.

    ``val`` is None when the dataset has no validation list; then ``val_size`` random
    training samples (``split_seed``) are held out (0: no validation set).
    """

    name: str
    root: Path
    train: FileSplit
    val: FileSplit | None
    test: FileSplit
    num_classes: int
    image_size: int  # the model's input size (the training crop and the evaluation crop)
    resize: int  # evaluation: shorter side resized to this, then a centre crop of image_size
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    val_size: int = 0
    split_seed: int = 0
    loader: str = "auto"  # auto | device | stream (see sat.data.loader_choice)
    train_augment: str = "random_resized_crop"  # see sat.data.transforms.train_transform
    scale: tuple[float, float] = (0.08, 1.0)  # random_resized_crop's area range
    # StreamLoader settings (they change speed, never results: see sat.data.stream)
    num_workers: int = 0
    decode: str = "auto"
    persistent_workers: bool = True
    prefetch_factor: int = 2
    class_names: tuple[str, ...] = ()
    asymmetric_map: list[int] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def train_val(self) -> tuple[FileSplit, FileSplit | None]:
        """The training split and the validation split (a list of its own, or held out)."""
        if self.val is not None:
            return self.train, self.val
        if self.val_size == 0:
            return self.train, None
        return self.train.holdout(self.val_size, self.split_seed)


# --- reading list files ----------------------------------------------------------------


def _layout_hint(layout: str) -> str:
    return f"; expected layout: {layout}" if layout else ""


def _example_line(spec: ListSpec) -> str:
    return {
        "column": "'relative/path.jpg 3'",
        "file": "'relative/path.jpg' (labels in the label_file as 'relative/path.jpg 3')",
        "folder": "'class_name/file.jpg'",
        "name_prefix": "image files named '3_00042.jpg' (label 3)",
    }[spec.labels]


def _read_lines(path: Path, header: int) -> list[tuple[int, str]]:
    """(0-based line number, stripped text) of the non-empty lines after the header."""
    with open(path, encoding="utf-8") as f:
        return [(n, line.strip()) for n, line in enumerate(f) if n >= header and line.strip()]


def _parse_label(text: str, where: str, example: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{where}: {text!r} is not an integer label; accepted: lines like {example}") from None


def _read_label_file(root: Path, name: str, what: str, layout: str) -> dict[str, int]:
    """``relative/path label`` lines as a dict (Clothing1M's ``*_label_kv.txt``)."""
    path = root / name
    if not path.is_file():
        raise UserError(f"dataset.root={root}: {what} {name} not found; it must hold lines like 'relative/path.jpg 3'"
                        f"{_layout_hint(layout)}")
    table = {}
    for n, line in _read_lines(path, 0):
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise UserError(f"{name}:{n + 1}: {line!r} has no label; accepted: lines like 'relative/path.jpg 3'")
        table[parts[0]] = _parse_label(parts[1], f"{name}:{n + 1}", "'relative/path.jpg 3'")
    return table


def _read_class_names(root: Path, name: str, header: int, layout: str) -> tuple[str, ...]:
    path = root / name
    if not path.is_file():
        raise UserError(f"dataset.root={root}: classes file {name} not found; it must list one class name per line"
                        f"{_layout_hint(layout)}")
    return tuple(line for _, line in _read_lines(path, header))


def _entries(root: Path, spec: ListSpec, layout: str) -> tuple[list[int], list[str], list[str]]:
    """(line numbers, listed paths, label fields or '') of a list file or folder."""
    where = root / spec.list
    if where.is_dir():  # a folder is a list of its image files, sorted by name
        names = sorted(p.name for p in where.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        return list(range(len(names))), [f"{spec.list.rstrip('/')}/{n}" for n in names], [""] * len(names)
    if not where.is_file():
        raise UserError(f"dataset.root={root}: list file {spec.list} not found; it must hold lines like "
                        f"{_example_line(spec)}{_layout_hint(layout)}")
    numbers, paths, fields = [], [], []
    for n, line in _read_lines(where, spec.header):
        if spec.labels == "column":
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise UserError(f"{spec.list}:{n + 1}: {line!r} has no label; accepted: lines like {_example_line(spec)}")
            paths.append(parts[0])
            fields.append(parts[1])
        else:
            paths.append(line.split("\t")[0].strip())  # .tsv lists may carry more columns
            fields.append("")
        numbers.append(n)
    return numbers, paths, fields


def _labels_of(root: Path, spec: ListSpec, paths: list[str], fields: list[str], classes: Sequence[str],
               layout: str) -> list[int]:
    example = _example_line(spec)
    if spec.labels == "column":
        return [_parse_label(f, f"{spec.list}: line of {p}", example) for p, f in zip(paths, fields)]
    if spec.labels == "file":
        if not spec.label_file:
            raise UserError(f"dataset list {spec.list} has labels=file but no label_file; accepted: "
                            f"label_file=<a 'relative/path label' file below dataset.root>")
        table = _read_label_file(root, spec.label_file, "label file", layout)
        missing = [p for p in paths if p not in table]
        if missing:
            raise UserError(f"dataset.root={root}: {len(missing)} paths of {spec.list} have no label in "
                            f"{spec.label_file}, e.g. {missing[0]!r}{_layout_hint(layout)}")
        return [table[p] for p in paths]
    if spec.labels == "folder":
        if not classes:
            raise UserError(f"dataset list {spec.list} has labels=folder but the dataset names no classes; accepted: "
                            f"dataset.classes=<a file of class names, one per line, below dataset.root>")
        index = {name: i for i, name in enumerate(classes)}
        labels = []
        for p in paths:
            folder = p.split("/", 1)[0]
            if folder not in index:
                raise UserError(f"{spec.list}: class folder {folder!r} of {p!r} is not in dataset.classes; "
                                f"accepted: one of its {len(classes)} names, such as {classes[0]!r}")
            labels.append(index[folder])
        return labels
    labels = []  # name_prefix
    for p in paths:
        stem = p.rsplit("/", 1)[-1]
        labels.append(_parse_label(stem.split("_", 1)[0], f"{spec.list}: file {stem}", example))
    return labels


def _check_files_exist(root: Path, spec: ListSpec, files: list[str], numbers: list[int], layout: str) -> None:
    missing = [i for i, f in enumerate(files) if not os.path.isfile(os.path.join(root, f))]
    if missing:
        i = missing[0]
        raise UserError(f"dataset.root={root}: {len(missing)} of {len(files)} images listed in {spec.list} are missing, "
                        f"e.g. {files[i]} (line {numbers[i] + 1}); each listed path must be a file below the root"
                        f"{_layout_hint(layout)}")


def read_split(
    root: str | os.PathLike, spec: ListSpec | Mapping[str, Any], classes: Sequence[str] = (), num_classes: int | None = None,
    drop_other_classes: bool = False, check_files: bool = True, layout: str = "",
) -> FileSplit:
    """Read one split's list into a :class:`FileSplit`.

    Labels outside ``[0, num_classes)`` raise a UserError, or are dropped with
    ``drop_other_classes`` (mini-WebVision: the first 50 classes of WebVision); the
    remaining samples keep their line numbers as ids.
    """
    root = Path(root).expanduser()
    spec = spec if isinstance(spec, ListSpec) else ListSpec(**dict(spec))
    if spec.labels not in LABEL_SOURCES:
        raise UserError(f"dataset list {spec.list}: labels={spec.labels!r} is not supported; "
                        f"accepted: {', '.join(LABEL_SOURCES)}")
    numbers, paths, fields = _entries(root, spec, layout)
    labels = torch.tensor(_labels_of(root, spec, paths, fields, classes, layout), dtype=torch.int64)
    ids = torch.tensor(numbers, dtype=torch.int64)
    clean = None
    if spec.clean_labels:
        table = _read_label_file(root, spec.clean_labels, "clean label file", layout)
        clean = torch.tensor([table.get(p, -1) for p in paths], dtype=torch.int64)
    files = [f"{spec.prefix}{p}{spec.suffix}" for p in paths]
    keep = torch.ones(len(files), dtype=torch.bool)
    if num_classes is not None and len(labels):
        outside = (labels < 0) | (labels >= num_classes)
        if outside.any() and not drop_other_classes:
            i = int(outside.nonzero()[0])
            raise UserError(f"{spec.list}:{numbers[i] + 1}: label {int(labels[i])} is out of range; accepted: "
                            f"0 <= label < dataset.num_classes={num_classes}")
        keep = ~outside
    if not keep.all():
        labels, ids = labels[keep], ids[keep]
        clean = None if clean is None else clean[keep]
        files = [f for f, k in zip(files, keep.tolist()) if k]
        numbers = [n for n, k in zip(numbers, keep.tolist()) if k]
    if check_files:
        _check_files_exist(root, spec, files, numbers, layout)
    array = np.array([f.encode() for f in files], dtype=np.bytes_) if files else np.array([], dtype="S1")
    return FileSplit(root, array, labels, ids, spec.list, clean)


def _spec(key: str, value: Any) -> ListSpec | None:
    """A split's config dict as a ListSpec, unknown keys and label sources refused."""
    if value is None:
        return None
    if isinstance(value, ListSpec):
        spec = value
    else:
        fields = dict(value)
        unknown = sorted(set(fields) - set(ListSpec.__dataclass_fields__))
        if unknown or "list" not in fields:
            raise UserError(f"dataset.{key}={fields} is not supported; accepted keys: list (required), "
                            f"{', '.join(k for k in ListSpec.__dataclass_fields__ if k != 'list')}")
        spec = ListSpec(**fields)
    if spec.labels not in LABEL_SOURCES:
        raise UserError(f"dataset.{key}.labels={spec.labels!r} is not supported; accepted: {', '.join(LABEL_SOURCES)}")
    for name in ("list", "label_file", "clean_labels", "prefix"):
        _check_below_root(f"{key}.{name}", getattr(spec, name))
    return spec


def _check_below_root(key: str, value: str | None) -> None:
    """Config paths are relative to dataset.root and stay below it (a stored config
    read back from a checkpoint must not point at other files)."""
    if value and (Path(value).is_absolute() or ".." in Path(value).parts):
        raise UserError(f"dataset.{key}={value!r} is not supported; accepted: a path relative to dataset.root, "
                        f"without '..'")


def _positive(key: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"dataset.{key}={value!r} is not supported; accepted: an integer >= {low}")
    return value


class ImageFolderSource(DataSource):
    """The Hydra node of a folder dataset. The constructor checks every value without
    touching a file (so a run fails on a typo before reading data); :meth:`load` reads
    and checks the lists and the files they name.

    ``layout`` is a one-line description of the expected folder layout, shown in every
    error about a missing file.
    """

    file_args = ("root",)  # where the files lie may change between machines; nothing else names files

    def __init__(
        self,
        name: str,
        root: str,
        num_classes: int,
        train: Mapping[str, Any],
        test: Mapping[str, Any],
        val: Mapping[str, Any] | None = None,
        classes: str | None = None,
        classes_header: int = 0,
        image_size: int = 224,
        resize: int = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        val_size: int = 0,
        split_seed: int = 0,
        drop_other_classes: bool = False,
        check_files: bool = True,
        loader: str = "auto",
        train_augment: str = "random_resized_crop",
        scale: Sequence[float] = (0.08, 1.0),
        num_workers: int = 0,
        decode: str = "auto",
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        layout: str = "",
    ) -> None:
        self.name, self.root, self.layout = str(name), str(root), str(layout)
        self.num_classes = _positive("num_classes", num_classes, low=2)
        self.image_size, self.resize = _positive("image_size", image_size), _positive("resize", resize)
        if resize < image_size:
            raise UserError(f"dataset.resize={resize} is smaller than dataset.image_size={image_size}; accepted: "
                            f"resize >= image_size (evaluation resizes, then centre-crops image_size)")
        self.input_shape = (3, self.image_size, self.image_size)
        self.val_size, self.split_seed = _positive("val_size", val_size, low=0), int(split_seed)
        if loader not in LOADERS:
            raise UserError(f"dataset.loader={loader!r} is not supported; accepted: {', '.join(LOADERS)}")
        if decode not in ("auto", "cpu", "cuda"):
            raise UserError(f"dataset.decode={decode!r} is not supported; accepted: auto, cpu, cuda")
        if train_augment not in TRAIN_AUGMENTS:
            raise UserError(f"dataset.train_augment={train_augment!r} is not supported; "
                            f"accepted: {', '.join(TRAIN_AUGMENTS)}")
        self.num_workers = _positive("num_workers", num_workers, low=0)
        self.prefetch_factor = _positive("prefetch_factor", prefetch_factor)
        self.train, self.val, self.test = _spec("train", train), _spec("val", val), _spec("test", test)
        _check_below_root("classes", classes)
        self.classes, self.classes_header = classes, int(classes_header)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(v) for v in std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise UserError(f"dataset.mean={list(self.mean)} / dataset.std={list(self.std)} are not supported; "
                            f"accepted: 3 values each (RGB), std > 0")
        self.drop_other_classes, self.check_files = bool(drop_other_classes), bool(check_files)
        self.loader, self.train_augment, self.decode = loader, train_augment, decode
        self.scale = (float(scale[0]), float(scale[1]))
        self.persistent_workers = bool(persistent_workers)

    def load(self) -> FolderDataset:
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise UserError(f"dataset.root={self.root} is not a folder; point it at the dataset's root"
                            f"{_layout_hint(self.layout)}")
        class_names = _read_class_names(root, self.classes, self.classes_header, self.layout) if self.classes else ()
        read = dict(classes=class_names, num_classes=self.num_classes, drop_other_classes=self.drop_other_classes,
                    check_files=self.check_files, layout=self.layout)
        train = read_split(root, self.train, **read)
        val = read_split(root, self.val, **read) if self.val is not None else None
        test = read_split(root, self.test, **read)
        if len(train) == 0:
            raise UserError(f"dataset.root={self.root}: the training list {train.source} has no samples"
                            f"{_layout_hint(self.layout)}")
        return FolderDataset(
            name=self.name, root=root, train=train, val=val, test=test, num_classes=self.num_classes,
            image_size=self.image_size, resize=self.resize, mean=self.mean, std=self.std, val_size=self.val_size,
            split_seed=self.split_seed, loader=self.loader, train_augment=self.train_augment, scale=self.scale,
            num_workers=self.num_workers, decode=self.decode, persistent_workers=self.persistent_workers,
            prefetch_factor=self.prefetch_factor, class_names=class_names,
            # c -> c + 1 (mod K): these datasets have no natural confusion map for synthetic asymmetric noise
            asymmetric_map=[(c + 1) % self.num_classes for c in range(self.num_classes)],
        )


def load_image_folder(*args: Any, **kwargs: Any) -> FolderDataset:
    """``ImageFolderSource(...).load()``: check the values, then read the data."""
    return ImageFolderSource(*args, **kwargs).load()
