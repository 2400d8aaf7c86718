"""Datasets given as an image folder: label lists, or torchvision's class folders.

This is the format of the real-world noisy-label benchmarks (Clothing1M, Food-101N,
ANIMAL-10N, mini-WebVision): images under a root folder and text files of
``relative/path label`` lines, one per split; and the layout everyone has, torchvision's
``ImageFolder`` (``root/train/<class>/*.png``, ``root/test/<class>/...``). Nothing is
decoded here: a split is a :class:`~sat.data.splits.FileSplit`, a list of file paths
with int64 labels and int64 sample ids. The id of a sample is its 0-based line number
in the list file (or its position in the sorted listing of a folder), so per-sample
state and exported label errors can always be traced back to a real file.

The Hydra node of a folder dataset is :class:`ImageFolderSource`; each split of a list
layout is described by a :class:`ListSpec` (a plain dict in the config).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sat.config import validate
from sat.data.datasets import DatasetSplits, DataSource
from sat.data.prepare import LOADERS
from sat.data.splits import FileReading, FileSplit
from sat.errors import UserError
from sat.config.trust import trusted

log = logging.getLogger("sat")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
LABEL_SOURCES = ("column", "file", "folder", "name_prefix")


# --- the value objects -----------------------------------------------------------------


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
    """(0-based line number, stripped text) of the non-empty lines after the header (a
    UTF-8 byte-order mark is dropped)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return [(n, line.strip()) for n, line in enumerate(f) if n >= header and line.strip()]
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r}); accepted: a "
                        "UTF-8 text file of one entry a line") from None


def _check_listed_paths(spec: ListSpec, files: list[str], numbers: list[int]) -> None:
    """Listed paths are relative and stay below the root (a list must not read other files)."""
    for f, n in zip(files, numbers):
        if os.path.isabs(f) or ".." in Path(f).parts:
            raise UserError(f"{spec.list}:{n + 1}: {f!r} lies outside dataset.root; accepted: paths relative to the "
                            "root, without '..'")


def _warn_duplicates(spec: ListSpec, files: list[str]) -> None:
    seen: set[str] = set()
    repeated = [f for f in files if f in seen or seen.add(f)]
    if repeated:
        log.warning("%s lists %d image path(s) more than once, e.g. %s: each line is a sample of its own",
                    spec.list, len(repeated), repeated[0])


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
    _check_listed_paths(spec, files, numbers)
    _warn_duplicates(spec, files)
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
    return validate.number(f"dataset.{key}", value, lo=low, integer=True)


LAYOUTS = ("auto", "class_folders", "lists")


def available_cores() -> int:
    """CPU cores this process may use (a Slurm or cgroup allocation, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def loader_workers(value: Any) -> int:
    """``dataset.num_workers``: an integer >= 0, or ``auto``: one per available core but
    one (the main process feeds the device), at most 8."""
    if value == "auto":
        return max(0, min(8, available_cores() - 1))
    return _positive("num_workers", value, low=0)


def class_folder_names(folder: Path) -> tuple[str, ...]:
    """The class names of a torchvision ``ImageFolder`` folder: its sub-folders, sorted."""
    return tuple(sorted(entry.name for entry in os.scandir(folder) if entry.is_dir()))


def read_class_folders(root: Path, folder: str, classes: Sequence[str]) -> FileSplit:
    """A split in torchvision's ``ImageFolder`` layout (``folder/<class>/**/*.png``):
    files in torchvision's order (classes sorted, then paths sorted), labels by class
    name, ids their positions in that order."""
    index = {name: i for i, name in enumerate(classes)}
    files, labels = [], []
    for name in class_folder_names(root / folder):
        if name not in index:
            raise UserError(f"dataset.root={root}: class folder {folder}/{name} is not a class of the training folder; "
                            f"accepted: one of its {len(classes)} classes, such as {classes[0]!r}")
        for top, _, names in sorted(os.walk(root / folder / name, followlinks=True)):
            for file in sorted(names):
                if Path(file).suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(os.path.relpath(os.path.join(top, file), root))
                    labels.append(index[name])
    array = np.array([f.encode() for f in files], dtype=np.bytes_) if files else np.array([], dtype="S1")
    return FileSplit(root, array, torch.tensor(labels, dtype=torch.int64), torch.arange(len(files)), folder)


def _warn_about_splits(train: FileSplit, test: FileSplit, num_classes: int) -> None:
    """Lines that say when a folder dataset is probably not what was meant."""
    if len(train.files) == len(test.files) and bool((train.files == test.files).all()):
        log.warning("the test split names the same images as the training split (%s, %s): test accuracy then "
                    "measures memorisation, not generalisation", train.source, test.source)
    empty = sorted(set(range(num_classes)) - set(train.labels.tolist()))
    if empty:
        log.warning("%d of the %d classes have no training image (e.g. class %d)", len(empty), num_classes, empty[0])


@trusted("dataset")
class ImageFolderSource(DataSource):
    """The Hydra node of a folder dataset. The constructor checks every value (a list
    layout without touching a file; a class-folder layout lists its class folders, to
    know the number of classes), so a run fails on a typo before reading data;
    :meth:`load` reads and checks the lists and the files they name.

    ``layout``: ``lists`` (label-list files, :class:`ListSpec`), ``class_folders``
    (torchvision's ``ImageFolder``: ``root/<train_folder>/<class>/*``), or ``auto``:
    whichever the root holds. ``layout_hint`` is a one-line description of the expected
    folder layout, shown in every error about a missing file.
    """

    file_args = ("root",)  # where the files lie may change between machines; nothing else names files

    def __init__(
        self,
        name: str,
        root: str,
        num_classes: int | None = None,
        layout: str = "lists",
        train: Mapping[str, Any] | None = None,
        test: Mapping[str, Any] | None = None,
        val: Mapping[str, Any] | None = None,
        train_folder: str = "train",
        test_folder: str = "test",
        val_folder: str | None = None,
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
        num_workers: int | str = "auto",
        decode: str = "auto",
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        layout_hint: str = "",
    ) -> None:
        self.name, self.root, self.layout_hint = str(name), str(root), str(layout_hint)
        self.image_size, self.resize = _positive("image_size", image_size), _positive("resize", resize)
        if resize < image_size:
            raise UserError(f"dataset.resize={resize} is smaller than dataset.image_size={image_size}; accepted: "
                            f"resize >= image_size (images are resized, then centre-cropped to image_size)")
        self.input_shape = (3, self.image_size, self.image_size)
        self.val_size, self.split_seed = _positive("val_size", val_size, low=0), int(split_seed)
        if loader not in LOADERS:
            raise UserError(f"dataset.loader={loader!r} is not supported; accepted: {', '.join(LOADERS)}")
        if decode not in ("auto", "cpu", "cuda"):
            raise UserError(f"dataset.decode={decode!r} is not supported; accepted: auto, cpu, cuda")
        self.reading = FileReading(self.image_size, self.resize, loader_workers(num_workers), decode,
                                   bool(persistent_workers), _positive("prefetch_factor", prefetch_factor))
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(v) for v in std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise UserError(f"dataset.mean={list(self.mean)} / dataset.std={list(self.std)} are not supported; "
                            f"accepted: 3 values each (RGB), std > 0")
        self.drop_other_classes, self.check_files, self.loader = bool(drop_other_classes), bool(check_files), loader
        self.layout = self._layout(layout, train, train_folder)
        if self.layout == "lists":
            self._lists(num_classes, train, val, test, classes, classes_header)
        else:
            self._class_folders(num_classes, train_folder, val_folder, test_folder)

    def _lists(self, num_classes: Any, train: Any, val: Any, test: Any, classes: str | None, header: int) -> None:
        if train is None or test is None:
            raise UserError("dataset.layout=lists needs dataset.train and dataset.test lists; accepted: "
                            "{list: train.txt} and {list: test.txt}, or dataset.layout=class_folders")
        self.train, self.val, self.test = _spec("train", train), _spec("val", val), _spec("test", test)
        _check_below_root("classes", classes)
        self.classes, self.classes_header = classes, int(header)
        if num_classes is None:
            raise UserError("dataset.num_classes is required for dataset.layout=lists; accepted: "
                            "dataset.num_classes=<the number of classes of the label lists>")
        self.num_classes = _positive("num_classes", num_classes, low=2)

    def _class_folders(self, num_classes: Any, train: str, val: str | None, test: str) -> None:
        for key, folder in (("train_folder", train), ("test_folder", test), ("val_folder", val)):
            _check_below_root(key, folder)
        self.folders = {"train": train, "test": test, "val": val}
        self.class_names = class_folder_names(Path(self.root).expanduser() / train)
        found = len(self.class_names)
        if num_classes is not None and num_classes != found:
            raise UserError(f"dataset.num_classes={num_classes} but {self.root}/{train} has {found} class "
                            f"folders; accepted: dataset.num_classes=null (inferred) or {found}")
        self.num_classes = _positive("num_classes (class folders found)", found, low=2)

    def _layout(self, layout: str, train: Any, train_folder: str) -> str:
        """The layout named, or (``auto``) the one the root holds: one line if both or neither."""
        if layout not in LAYOUTS:
            raise UserError(f"dataset.layout={layout!r} is not supported; accepted: {', '.join(LAYOUTS)}")
        if layout != "auto":
            return layout
        root = Path(self.root).expanduser()
        lists = train is not None and (root / dict(train).get("list", "")).is_file()
        folder = (root / train_folder).is_dir() and bool(class_folder_names(root / train_folder))
        if lists and folder:
            raise UserError(f"dataset.root={self.root} holds both a training list ({dict(train)['list']}) and class "
                            f"folders ({train_folder}/<class>/); accepted: dataset.layout=lists or class_folders")
        if not (lists or folder):
            listed = f" ({dict(train).get('list')})" if train is not None else ""
            raise UserError(f"dataset.root={self.root} holds neither class folders ({train_folder}/<class>/*.png) nor "
                            f"a training list{listed}; point dataset.root at the dataset{_layout_hint(self.layout_hint)}")
        return "lists" if lists else "class_folders"

    def load(self) -> DatasetSplits:
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise UserError(f"dataset.root={self.root} is not a folder; point it at the dataset's root"
                            f"{_layout_hint(self.layout_hint)}")
        if self.layout == "lists":
            class_names, splits = self._read_lists(root)
        else:
            class_names = self.class_names
            splits = {k: None if f is None else read_class_folders(root, f, class_names) for k, f in self.folders.items()}
        train, val, test = (None if s is None else s.with_reading(self.reading)
                            for s in (splits["train"], splits["val"], splits["test"]))
        if len(train) == 0:
            raise UserError(f"dataset.root={self.root}: the training split {train.source} has no images"
                            f"{_layout_hint(self.layout_hint)}")
        _warn_about_splits(train, test, self.num_classes)
        return DatasetSplits(
            self.name, train, test, self.num_classes, self.mean, self.std, self.val_size if val is None else 0,
            # c -> c + 1 (mod K): these datasets have no natural confusion map for synthetic asymmetric noise
            [(c + 1) % self.num_classes for c in range(self.num_classes)],
            val=val, holdout_seed=self.split_seed, loader=self.loader, class_names=tuple(class_names))

    def _read_lists(self, root: Path) -> tuple[tuple[str, ...], dict[str, FileSplit | None]]:
        class_names = _read_class_names(root, self.classes, self.classes_header, self.layout_hint) if self.classes \
            else ()
        read = dict(classes=class_names, num_classes=self.num_classes, drop_other_classes=self.drop_other_classes,
                    check_files=self.check_files, layout=self.layout_hint)
        splits = {k: None if spec is None else read_split(root, spec, **read)
                  for k, spec in (("train", self.train), ("val", self.val), ("test", self.test))}
        return class_names, splits
