"""Write small CIFAR-10/100 folders in the real on-disk format (python pickles of
``data`` uint8 rows of 3072 bytes, R then G then B planes, plus labels)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 20, test: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in [(f"data_batch_{b}", per_batch) for b in range(1, 6)] + [("test_batch", test)]:
        _dump(folder / i, {"batch_label": i, "labels": rng.integers(0, 10, n).tolist(),
                           "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "filenames": [f"{k}.png" for k in range(n)]})
    _dump(folder / "batches.meta", {"label_names": [f"c{k}" for k in range(10)], "num_cases_per_batch": per_batch})
    return folder


def write_cifar100(root: Path, train: int = 200, test: int = 50, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    coarse_of = np.arange(100) % 20  # a fixed fine -> coarse assignment
    for name, n in [("train", train), ("test", test)]:
        fine = np.concatenate([np.arange(100), rng.integers(0, 100, n - 100)]) if n >= 100 else rng.integers(0, 100, n)
        _dump(folder / name, {"fine_labels": fine.tolist(), "coarse_labels": coarse_of[fine].tolist(),
                              "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)})
    _dump(folder / "meta", {"fine_label_names": [f"f{k}" for k in range(100)],
                            "coarse_label_names": [f"s{k}" for k in range(20)]})
    return folder
