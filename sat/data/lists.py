"""Label list files: the format of the real-world noisy-label benchmarks (Clothing1M,
Food-101N, ANIMAL-10N, mini-WebVision): images under a root folder and text files of
``relative/path label`` lines, one per split. A split is read into a
:class:`~sat.data.splits.FileSplit` (file paths, int64 labels, int64 ids): the id of a
sample is its 0-based line number in the list (or its position in the sorted listing of
a folder), so per-sample state and exported label errors trace back to a real file.
Nothing is decoded here."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sat.data.splits import FileSplit
from sat.errors import UserError

log = logging.getLogger("sat")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
LABEL_SOURCES = ("column", "file", "folder", "name_prefix")


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


def layout_hint(layout: str) -> str:
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
            raise UserError(f"{spec.list}:{n + 1}: {f!r} lies outside {{key}}; accepted: paths relative to {{key}}, "
                            "without '..'", key="root")


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
        raise UserError(f"{{key}}={root}: {what} {name} not found; it must hold lines like 'relative/path.jpg 3'"
                        f"{layout_hint(layout)}", key="root")
    table = {}
    for n, line in _read_lines(path, 0):
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise UserError(f"{name}:{n + 1}: {line!r} has no label; accepted: lines like 'relative/path.jpg 3'")
        table[parts[0]] = _parse_label(parts[1], f"{name}:{n + 1}", "'relative/path.jpg 3'")
    return table


def read_class_names(root: Path, name: str, header: int, layout: str) -> tuple[str, ...]:
    path = root / name
    if not path.is_file():
        raise UserError(f"{{key}}={root}: classes file {name} not found; it must list one class name per line"
                        f"{layout_hint(layout)}", key="root")
    return tuple(line for _, line in _read_lines(path, header))


def _entries(root: Path, spec: ListSpec, layout: str) -> tuple[list[int], list[str], list[str]]:
    """(line numbers, listed paths, label fields or '') of a list file or folder."""
    where = root / spec.list
    if where.is_dir():  # a folder is a list of its image files, sorted by name
        names = sorted(p.name for p in where.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        return list(range(len(names))), [f"{spec.list.rstrip('/')}/{n}" for n in names], [""] * len(names)
    if not where.is_file():
        raise UserError(f"{{key}}={root}: list file {spec.list} not found; it must hold lines like "
                        f"{_example_line(spec)}{layout_hint(layout)}", key="root")
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
            raise UserError(f"list {spec.list} has labels=file but no label_file; accepted: "
                            "label_file=<a 'relative/path label' file below {key}>", key="root")
        table = _read_label_file(root, spec.label_file, "label file", layout)
        missing = [p for p in paths if p not in table]
        if missing:
            raise UserError(f"{{key}}={root}: {len(missing)} paths of {spec.list} have no label in "
                            f"{spec.label_file}, e.g. {missing[0]!r}{layout_hint(layout)}", key="root")
        return [table[p] for p in paths]
    if spec.labels == "folder":
        if not classes:
            raise UserError(f"list {spec.list} has labels=folder but the dataset names no classes; accepted: "
                            "{.classes}=<a file of class names, one per line, below {key}>", key="root")
        index = {name: i for i, name in enumerate(classes)}
        labels = []
        for p in paths:
            folder = p.split("/", 1)[0]
            if folder not in index:
                raise UserError(f"{spec.list}: class folder {folder!r} of {p!r} is not in {{key}}; "
                                f"accepted: one of its {len(classes)} names, such as {classes[0]!r}", key="classes")
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
        raise UserError(f"{{key}}={root}: {len(missing)} of {len(files)} images listed in {spec.list} are missing, "
                        f"e.g. {files[i]} (line {numbers[i] + 1}); each listed path must be a file below the root"
                        f"{layout_hint(layout)}", key="root")


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
        raise UserError(f"list {spec.list}: labels={spec.labels!r} is not supported; "
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
                            f"0 <= label < {{key}}={num_classes}", key="num_classes")
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


def spec_of(key: str, value: Any) -> ListSpec | None:
    """A split's config dict as a ListSpec, unknown keys and label sources refused."""
    if value is None:
        return None
    if isinstance(value, ListSpec):
        spec = value
    else:
        fields = dict(value)
        unknown = sorted(set(fields) - set(ListSpec.__dataclass_fields__))
        if unknown or "list" not in fields:
            raise UserError(key=key, value=fields, problem="is not supported", accepted="the keys list (required), "
                            f"{', '.join(k for k in ListSpec.__dataclass_fields__ if k != 'list')}")
        spec = ListSpec(**fields)
    if spec.labels not in LABEL_SOURCES:
        raise UserError(key=f"{key}.labels", value=spec.labels, problem="is not supported",
                        accepted=", ".join(LABEL_SOURCES))
    for name in ("list", "label_file", "clean_labels", "prefix"):
        check_below_root(f"{key}.{name}", getattr(spec, name))
    return spec


def check_below_root(key: str, value: str | None) -> None:
    """Config paths are relative to the dataset's root and stay below it (a stored
    config read back from a checkpoint must not point at other files)."""
    if value and (Path(value).is_absolute() or ".." in Path(value).parts):
        raise UserError(key=key, value=value, problem="is not supported",
                        accepted="a path relative to {.root}, without '..'")


def list_text(files: Sequence[str], labels: torch.Tensor, header: str) -> str:
    """A split as a list file of ``relative/path label`` lines after one header line:
    what :func:`read_split` reads back with ``{list: ..., header: 1}``."""
    for f in files:
        if f != f.strip() or any(c in f for c in "\r\n"):
            raise UserError(f"file {f!r} cannot be written in a list of 'path label' lines; accepted: paths without "
                            "leading or trailing spaces or line breaks")
    return "".join([f"# {' '.join(header.split())}\n", *(f"{f} {int(y)}\n" for f, y in zip(files, labels.tolist()))])
