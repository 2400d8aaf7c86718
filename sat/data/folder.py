"""Datasets given as an image folder: label lists (:mod:`sat.data.lists`: the
real-world noisy-label benchmarks) or the layout everyone has, torchvision's
``ImageFolder`` (``root/train/<class>/*.png``, ``root/test/<class>/...``), whose ids are
positions in the sorted listing.

The Hydra node of a folder dataset is :class:`ImageFolderSource`; each split of a list
layout is described by a :class:`~sat.data.lists.ListSpec` (a plain dict in the config).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sat.config import validate
from sat.config.roles import FILE, PER_PROCESS
from sat.config.trust import trusted
from sat.data.datasets import DatasetSplits, DataSource
from sat.data.lists import IMAGE_EXTENSIONS, check_below_root, layout_hint, read_class_names, read_split, spec_of
from sat.data.splits import FileReading, FileSplit
from sat.errors import UserError

log = logging.getLogger("sat")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _positive(key: str, value: Any, low: int = 1) -> int:
    return validate.number(f"{key}", value, lo=low, integer=True)


LAYOUTS = ("auto", "class_folders", "lists")


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
            raise UserError(f"{{key}}={root}: class folder {folder}/{name} is not a class of the training folder; "
                            f"accepted: one of its {len(classes)} classes, such as {classes[0]!r}", key="root")
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

    arg_roles = {"root": (FILE, PER_PROCESS)}  # where the files lie may change between machines

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
        layout_hint: str = "",
    ) -> None:
        self.name, self.root, self.layout_hint = str(name), str(root), str(layout_hint)
        self.image_size, self.resize = _positive("image_size", image_size), _positive("resize", resize)
        if resize < image_size:
            raise UserError(key="resize", value=resize, problem=f"is smaller than {{.image_size}}={image_size}",
                            accepted="{key} >= {.image_size} (images are resized, then centre-cropped to "
                                     "{.image_size})")
        self.input_shape = (3, self.image_size, self.image_size)
        self.val_size, self.split_seed = _positive("val_size", val_size, low=0), int(split_seed)
        self.reading = FileReading(self.image_size, self.resize)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(v) for v in std)
        if len(self.mean) != 3:
            raise UserError(key="mean", value=list(self.mean), problem="is not supported", accepted="3 values (RGB)")
        if len(self.std) != 3 or min(self.std) <= 0:
            raise UserError(key="std", value=list(self.std), problem="is not supported",
                            accepted="3 values (RGB), each > 0")
        self.drop_other_classes, self.check_files = bool(drop_other_classes), bool(check_files)
        self.layout = self._layout(layout, train, train_folder)
        if self.layout == "lists":
            self._lists(num_classes, train, val, test, classes, classes_header)
        else:
            self._class_folders(num_classes, train_folder, val_folder, test_folder)

    def _lists(self, num_classes: Any, train: Any, val: Any, test: Any, classes: str | None, header: int) -> None:
        if train is None or test is None:
            raise UserError(key="layout", value="lists", problem="needs {.train} and {.test} lists",
                            accepted="{list: train.txt} and {list: test.txt}, or {key}=class_folders")
        self.train, self.val, self.test = spec_of("train", train), spec_of("val", val), spec_of("test", test)
        check_below_root("classes", classes)
        self.classes, self.classes_header = classes, int(header)
        if num_classes is None:
            raise UserError(key="num_classes", problem="is required for {.layout}=lists",
                            accepted="{key}=<the number of classes of the label lists>")
        self.num_classes = _positive("num_classes", num_classes, low=2)

    def _class_folders(self, num_classes: Any, train: str, val: str | None, test: str) -> None:
        for key, folder in (("train_folder", train), ("test_folder", test), ("val_folder", val)):
            check_below_root(key, folder)
        self.folders = {"train": train, "test": test, "val": val}
        self.class_names = class_folder_names(Path(self.root).expanduser() / train)
        found = len(self.class_names)
        if num_classes is not None and num_classes != found:
            raise UserError(key="num_classes", value=num_classes, problem=f"but {self.root}/{train} has {found} "
                            "class folders", accepted=f"{{key}}=null (inferred) or {found}")
        if found < 2:
            raise UserError(f"{{key}}={self.root}: {train}/ has {found} class folder(s); accepted: a training folder "
                            f"of at least 2 class folders ({train}/<class>/*.png)", key="root")
        self.num_classes = found

    def _layout(self, layout: str, train: Any, train_folder: str) -> str:
        """The layout named, or (``auto``) the one the root holds: one line if both or neither."""
        if validate.choice("layout", layout, LAYOUTS) != "auto":
            return layout
        root = Path(self.root).expanduser()
        lists = train is not None and (root / dict(train).get("list", "")).is_file()
        folder = (root / train_folder).is_dir() and bool(class_folder_names(root / train_folder))
        if lists and folder:
            raise UserError(f"{{key}}={self.root} holds both a training list ({dict(train)['list']}) and class "
                            f"folders ({train_folder}/<class>/); accepted: {{.layout}}=lists or class_folders", key="root")
        if not (lists or folder):
            listed = f" ({dict(train).get('list')})" if train is not None else ""
            raise UserError(f"{{key}}={self.root} holds neither class folders ({train_folder}/<class>/*.png) nor "
                            f"a training list{listed}; point {{key}} at the dataset{layout_hint(self.layout_hint)}",
                            key="root")
        return "lists" if lists else "class_folders"

    def load(self) -> DatasetSplits:
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise UserError(f"{{key}}={self.root} is not a folder; point it at the dataset's root"
                            f"{layout_hint(self.layout_hint)}", key="root")
        if self.layout == "lists":
            class_names, splits = self._read_lists(root)
        else:
            class_names = self.class_names
            splits = {k: None if f is None else read_class_folders(root, f, class_names) for k, f in self.folders.items()}
        train, val, test = (None if s is None else s.with_reading(self.reading)
                            for s in (splits["train"], splits["val"], splits["test"]))
        if len(train) == 0:
            raise UserError(f"{{key}}={self.root}: the training split {train.source} has no images"
                            f"{layout_hint(self.layout_hint)}", key="root")
        _warn_about_splits(train, test, self.num_classes)
        return DatasetSplits(
            self.name, train, test, self.num_classes, self.mean, self.std, self.val_size if val is None else 0,
            # c -> c + 1 (mod K): these datasets have no natural confusion map for synthetic asymmetric noise
            [(c + 1) % self.num_classes for c in range(self.num_classes)],
            val=val, holdout_seed=self.split_seed, class_names=tuple(class_names))

    def _read_lists(self, root: Path) -> tuple[tuple[str, ...], dict[str, FileSplit | None]]:
        class_names = read_class_names(root, self.classes, self.classes_header, self.layout_hint) if self.classes \
            else ()
        read = dict(classes=class_names, num_classes=self.num_classes, drop_other_classes=self.drop_other_classes,
                    check_files=self.check_files, layout=self.layout_hint)
        splits = {k: None if spec is None else read_split(root, spec, **read)
                  for k, spec in (("train", self.train), ("val", self.val), ("test", self.test))}
        return class_names, splits
