"""CIFAR-10N / CIFAR-100N human labels (Wei et al., ICLR 2022, "Learning with Noisy
Labels Revisited: A Study Using Real-World Human Annotations").

The published files ``CIFAR-10_human.pt`` and ``CIFAR-100_human.pt`` are ``torch.save``
pickles of a dict of numpy int64 arrays of 50,000 labels in the order of the original
CIFAR training batches (CIFAR-100's file also holds coarse labels as lists, unused
here). A pickle can run code, so the file is read with ``torch.load(weights_only=True)``
allowing only what a numpy int array needs, then checked against the dataset: keys,
int arrays, length, label range, and ``clean_label`` equal to the dataset's own training
labels, which catches a file for the other dataset or another image order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sat.errors import UserError

SOURCE = "https://github.com/UCSC-REAL/cifar-10-100n"
RAW_URL = "https://raw.githubusercontent.com/UCSC-REAL/cifar-10-100n/main/data/{file_name}"


@dataclass(frozen=True)
class HumanLabelFile:
    """What one published file holds."""

    title: str
    file_name: str
    num_classes: int
    label_keys: dict[str, str]  # the user's choice (noise.label) -> the file's key
    sha256: str  # of the published file, checked after a download

    @property
    def keys(self) -> tuple[str, ...]:
        return ("clean_label", *self.label_keys.values())

    def where_to_get(self) -> str:
        return f"get data/{self.file_name} from {SOURCE}"


HUMAN_LABEL_FILES = {
    "cifar10": HumanLabelFile(
        "CIFAR-10N", "CIFAR-10_human.pt", 10,
        {"worse": "worse_label", "aggre": "aggre_label", "random1": "random_label1",
         "random2": "random_label2", "random3": "random_label3"},
        "873e69c39cb9b5e97fb6bae2d60bb59b38a5cbc31d2b868f7903dcb2b9dd2310"),
    "cifar100": HumanLabelFile("CIFAR-100N", "CIFAR-100_human.pt", 100, {"noisy": "noisy_label"},
                               "bd2d80409754d420292d622e15e25248ba21e37d27429efac49c8da723f44394"),
}


def human_label_file(dataset: str) -> HumanLabelFile:
    if dataset not in HUMAN_LABEL_FILES:
        raise UserError(f"dataset={dataset!r} has no CIFAR-N labels; accepted: {', '.join(HUMAN_LABEL_FILES)}")
    return HUMAN_LABEL_FILES[dataset]


def _numpy_int_array_globals() -> list:
    """The pickle globals a numpy int array needs, under both module names numpy uses
    (the published files were written by numpy 1.x: ``numpy.core``)."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    int_dtypes = [type(np.dtype(t)) for t in (np.int8, np.int16, np.int32, np.int64,
                                              np.uint8, np.uint16, np.uint32, np.uint64)]
    return [(_reconstruct, "numpy.core.multiarray._reconstruct"),
            (_reconstruct, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype, *int_dtypes]


def _read(path: Path, spec: HumanLabelFile) -> object:
    if not hasattr(torch.serialization, "safe_globals"):
        raise UserError(f"reading {spec.title} labels safely needs torch >= 2.6; got torch {torch.__version__}")
    try:
        with torch.serialization.safe_globals(_numpy_int_array_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a refused global, not a zip, truncated, ...: torch's message is many lines
        raise UserError(f"{spec.title} label file {path} cannot be read as a dict of numpy int arrays "
                        f"({type(e).__name__}); {spec.where_to_get()}") from None


def load_human_labels(path: str | os.PathLike, dataset: str, clean_labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The file's ``clean_label`` and label sets (``HUMAN_LABEL_FILES[dataset].keys``)
    as int64 tensors, after checking them against ``clean_labels``, the dataset's
    training labels in their original order. A dataset cut to its first ``n`` training
    images (``dataset.num_train``) gets the file's first ``n`` rows; ``clean_label`` must
    still equal its labels, so another order or subset is refused."""
    spec = human_label_file(dataset)
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{{key}}={path}: no {spec.title} label file there; {spec.where_to_get()} "
                        "(or set {.download}=true)", key="path")
    data = _read(path, spec)
    bad = f"{spec.title} label file {path} is malformed"
    if not isinstance(data, dict):
        raise UserError(f"{bad}: it holds a {type(data).__name__}, not a dict; {spec.where_to_get()}")
    missing = [k for k in spec.keys if k not in data]
    if missing:
        raise UserError(f"{bad}: keys {', '.join(missing)} are missing (has {', '.join(map(str, data))}); "
                        f"{spec.where_to_get()}")
    clean_labels = torch.as_tensor(clean_labels, dtype=torch.int64).cpu()
    labels = {}
    for key in spec.keys:
        a = data[key]
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu" or a.ndim != 1:
            got = f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise UserError(f"{bad}: {key} is a {got}, not a 1-d numpy int array; {spec.where_to_get()}")
        if len(a) < len(clean_labels):
            raise UserError(f"{bad}: {key} has {len(a)} labels but the dataset has {len(clean_labels)} training "
                            f"samples; {spec.where_to_get()}")
        a = a[: len(clean_labels)]  # a training set cut to its first images (dataset.num_train): their rows
        if len(a) and (a.min() < 0 or a.max() >= spec.num_classes):
            raise UserError(f"{bad}: {key} has labels in [{a.min()}, {a.max()}], outside [0, {spec.num_classes}); "
                            f"{spec.where_to_get()}")
        labels[key] = torch.from_numpy(a.astype(np.int64))
    differ = torch.nonzero(labels["clean_label"] != clean_labels).flatten()
    if len(differ):
        raise UserError(f"{spec.title} label file {path} does not match the dataset: clean_label differs from the "
                        f"{dataset} training labels at {len(differ)} of {len(clean_labels)} samples (first at index "
                        f"{int(differ[0])}); a file for another dataset or image order? {spec.where_to_get()}")
    return labels


def download_human_labels(dataset: str, path: str | os.PathLike) -> Path:
    """Fetch the published file to ``path`` (unless it is there), checking its sha256."""
    spec = human_label_file(dataset)
    path = Path(path).expanduser()
    if path.is_file():
        return path
    url = RAW_URL.format(file_name=spec.file_name)
    try:
        import urllib.request  # (with ssl and http: 0.1 s of every process start, for a download)

        with urllib.request.urlopen(url, timeout=60) as response:
            payload = response.read()
    except Exception as e:  # no network, proxy, HTTP error, ...
        reason = (str(e).splitlines() or [""])[0]
        raise UserError(f"could not download {spec.title} labels from {url} ({type(e).__name__}: {reason}); "
                        f"{spec.where_to_get()}") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != spec.sha256:
        raise UserError(f"the {spec.title} labels downloaded from {url} have sha256 {digest[:12]}..., not the "
                        f"published {spec.sha256[:12]}...; {spec.where_to_get()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")  # renamed into place: never a half-written file
    partial.write_bytes(payload)
    os.replace(partial, path)
    return path
