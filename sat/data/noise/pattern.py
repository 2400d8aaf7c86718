"""A realised corruption of a training set, as a value: which samples are corrupted and
what they become, hashed, saved and loaded (``noise.pt``: tensors and plain values,
read without running code), and re-applied to reproduce (or resume) a run exactly."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sat.errors import UserError
from sat.run.checkpoint import check_fits

UNLABELED = -1  # the label of a training image that has none (STL-10's unlabeled split)


def _bytes(t: Tensor | None) -> bytes:
    if t is None:
        return b"none"
    t = t.detach().cpu().contiguous()
    # dtype and shape are part of the hash: same bytes in another layout differ.
    return f"{t.dtype}{tuple(t.shape)}".encode() + t.numpy().tobytes()


@dataclass
class NoisePattern:
    """One realised corruption of a training set of ``len(labels)`` samples.

    ``dataset`` is the identity of the training set it was drawn for (see
    ``DatasetSplits.identity``: name, size, hash of the clean labels): a pattern is
    only ever applied to that set. A pattern of cleaned labels (``noise=refined``) may
    also leave samples out of training (``removed``: their sample ids; the validation
    split is held out first and keeps them) and say where its labels came from
    (``source``: plain values, shown in the run's summary).
    """

    kind: str
    rate: float
    seed: int
    indices: Tensor  # int64, sorted: the corrupted samples
    labels: Tensor  # int64 (n,): the full label vector after noise
    images: Tensor | None  # uint8 (len(indices), C, H, W) replacements; image noise only
    dataset: dict[str, Any] | None = None
    removed: Tensor | None = None  # int64 sample ids left out of training
    source: dict[str, Any] | None = None

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def apply(self, images: Tensor | None, labels: Tensor) -> tuple[Tensor | None, Tensor]:
        """Return noisy copies of ``images`` and ``labels``; the inputs are untouched."""
        n = len(labels)
        if n != self.num_samples:
            raise UserError(
                f"noise pattern has {self.num_samples} samples but the dataset has {n}; "
                f"accepted: a pattern drawn for this dataset"
            )
        new_labels = self.labels.clone()
        if images is None:
            if self.images is not None:
                raise UserError(f"noise kind {self.kind!r} corrupts images but no images were given")
            return None, new_labels
        if len(images) != n:
            raise UserError(f"got {len(images)} images for {n} labels; accepted: one image per label")
        new_images = images.clone()
        if self.images is not None and len(self.indices):
            if tuple(images.shape[1:]) != tuple(self.images.shape[1:]):
                raise UserError(
                    f"noise pattern images have shape {tuple(self.images.shape[1:])} but the dataset "
                    f"images have {tuple(images.shape[1:])}; accepted: a pattern drawn for this dataset"
                )
            new_images[self.indices] = self.images.to(images.dtype)
        return new_images, new_labels

    def realised_error(self, true_labels: Tensor) -> float:
        """Fraction of labels that differ from ``true_labels``."""
        true_labels = torch.as_tensor(true_labels, dtype=torch.int64)
        if len(true_labels) == 0:
            return 0.0
        return (self.labels != true_labels).double().mean().item()

    def sha256(self) -> str:
        h = hashlib.sha256()
        identity = repr(sorted((self.dataset or {}).items())).encode()
        for part in (self.kind.encode(), repr(float(self.rate)).encode(), str(int(self.seed)).encode(),
                     _bytes(self.indices), _bytes(self.labels), _bytes(self.images), identity):
            # Length prefix keeps field boundaries unambiguous.
            h.update(len(part).to_bytes(8, "little") + part)
        for name, extra in (("removed", self.removed), ("source", self.source)):
            if extra is not None:  # only where set: the hashes of patterns without them stay as they were
                data = name.encode() + (_bytes(extra) if isinstance(extra, Tensor) else repr(sorted(extra.items())).encode())
                h.update(len(data).to_bytes(8, "little") + data)
        return h.hexdigest()

    def check_dataset(self, identity: dict[str, Any], source: str, key: str | None = None) -> None:
        """Refuse to apply this pattern to another training set than its own. ``source``
        says where the pattern came from (``{key}`` in it: the argument ``key``)."""
        if self.dataset != identity:
            def show(d: dict[str, Any] | None) -> str:
                if not d:
                    return "an unrecorded training set"
                return f"{d.get('dataset')} ({d.get('num_samples')} samples, labels hash {str(d.get('labels_sha256'))[:12]})"

            raise UserError(f"{source} was drawn for {show(self.dataset)} but this run trains on {show(identity)}; "
                            "accepted: a noise file of the same dataset, split and size", key=key)

    def check_labels(self, num_classes: int, source: str) -> None:
        """Every label is a class of the dataset (or marks an image without one): a crafted
        file's label >= num_classes would index past every per-class table."""
        if self.labels.numel() and int(self.labels.max()) >= num_classes:
            raise UserError(f"{source} holds label {int(self.labels.max())}, but the dataset has {num_classes} classes; "
                            f"accepted: a noise file drawn for this dataset (labels 0 to {num_classes - 1})")

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` atomically (a crash never leaves a half-written file)."""
        from sat.run.checkpoint import atomic_torch_save  # the project's one atomic writer

        atomic_torch_save({
            "kind": self.kind, "rate": float(self.rate), "seed": int(self.seed), "indices": self.indices.cpu(),
            "labels": self.labels.cpu(), "images": None if self.images is None else self.images.cpu(),
            "dataset": self.dataset, "removed": None if self.removed is None else self.removed.cpu(),
            "source": self.source, "sha256": self.sha256(),
        }, path)

    @classmethod
    def load(cls, path: str | os.PathLike, num_samples: int | None = None) -> NoisePattern:
        """Load and verify a pattern written by :meth:`save` (loading runs no code)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise UserError(f"noise file {path} does not exist; accepted: a noise.pt written by a run")
        check_fits(Path(path), "noise file")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            pattern = cls(kind=str(d["kind"]), rate=float(d["rate"]), seed=int(d["seed"]), indices=d["indices"],
                          labels=d["labels"], images=d["images"], dataset=d.get("dataset"), removed=d.get("removed"),
                          source=d.get("source"))
            stored = d["sha256"]
        except Exception as e:  # unreadable, refused objects or missing fields: not ours, or damaged
            raise UserError(f"noise file {path} is corrupted or not a noise file: cannot be read "
                            f"({type(e).__name__})") from None
        pattern._check_fields(path)
        if stored != pattern.sha256():
            raise UserError(f"noise file {path} is corrupted: hash mismatch")
        if num_samples is not None and pattern.num_samples != num_samples:
            raise UserError(
                f"noise file {path} has {pattern.num_samples} samples but the dataset has {num_samples}; "
                f"accepted: a noise file drawn for this dataset"
            )
        return pattern

    def _check_fields(self, path: str) -> None:
        """Shapes, dtypes and ranges a real pattern has."""
        ok = (
            isinstance(self.labels, Tensor) and self.labels.dtype == torch.int64 and self.labels.dim() == 1
            and isinstance(self.indices, Tensor) and self.indices.dtype == torch.int64 and self.indices.dim() == 1
            and (self.labels.numel() == 0 or int(self.labels.min()) >= UNLABELED)
            and (self.indices.numel() == 0 or (int(self.indices.min()) >= 0
                                              and int(self.indices.max()) < len(self.labels)))
            and (self.images is None or (isinstance(self.images, Tensor) and self.images.dtype == torch.uint8
                                         and self.images.dim() == 4 and len(self.images) == len(self.indices)))
            and (self.dataset is None or isinstance(self.dataset, dict))
            and (self.removed is None or (isinstance(self.removed, Tensor) and self.removed.dtype == torch.int64
                                          and self.removed.dim() == 1))
            and (self.source is None or isinstance(self.source, dict))
        )
        if not ok:
            raise UserError(f"noise file {path} is corrupted: its labels, indices or images have the wrong shape, "
                            "type or range")
