"""Label and image noise injection.

A :class:`Noise` (built from ``conf/noise/*.yaml``) draws a :class:`NoisePattern`
from the clean training set: which samples are corrupted and what they become.
The pattern is a plain value that can be saved, hashed and re-applied, so a run
can be reproduced (or resumed) with exactly the same corruption.

All randomness comes from a private ``torch.Generator`` seeded with ``seed``;
the global RNG is never touched, so noise does not depend on model init order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor

from sat.config import validate
from sat.errors import UserError
from sat.config.trust import trusted

__all__ = [
    "AsymmetricLabelNoise",
    "FlipLabelNoise",
    "GaussianImageNoise",
    "Noise",
    "NoisePattern",
    "RandomPixelsNoise",
    "ShuffledPixelsNoise",
    "UniformLabelNoise",
]

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
    only ever applied to that set.
    """

    kind: str
    rate: float
    seed: int
    indices: Tensor  # int64, sorted: the corrupted samples
    labels: Tensor  # int64 (n,): the full label vector after noise
    images: Tensor | None  # uint8 (len(indices), C, H, W) replacements; image noise only
    dataset: dict[str, Any] | None = None

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
        return h.hexdigest()

    def check_dataset(self, identity: dict[str, Any], source: str) -> None:
        """Refuse to apply this pattern to another training set than its own."""
        if self.dataset != identity:
            def show(d: dict[str, Any] | None) -> str:
                if not d:
                    return "an unrecorded training set"
                return f"{d.get('dataset')} ({d.get('num_samples')} samples, labels hash {str(d.get('labels_sha256'))[:12]})"

            raise UserError(f"{source} was drawn for {show(self.dataset)} but this run trains on {show(identity)}; "
                            "accepted: a noise file of the same dataset, split and size")

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` atomically (a crash never leaves a half-written file)."""
        from sat.run.checkpoint import atomic_torch_save  # the project's one atomic writer

        atomic_torch_save({
            "kind": self.kind, "rate": float(self.rate), "seed": int(self.seed), "indices": self.indices.cpu(),
            "labels": self.labels.cpu(), "images": None if self.images is None else self.images.cpu(),
            "dataset": self.dataset, "sha256": self.sha256(),
        }, path)

    @classmethod
    def load(cls, path: str | os.PathLike, num_samples: int | None = None) -> NoisePattern:
        """Load and verify a pattern written by :meth:`save` (loading runs no code)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise UserError(f"noise file {path} does not exist; accepted: a noise.pt written by a run")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            pattern = cls(kind=str(d["kind"]), rate=float(d["rate"]), seed=int(d["seed"]), indices=d["indices"],
                          labels=d["labels"], images=d["images"], dataset=d.get("dataset"))
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
            and (self.labels.numel() == 0 or int(self.labels.min()) >= 0)
            and (self.indices.numel() == 0 or (int(self.indices.min()) >= 0
                                              and int(self.indices.max()) < len(self.labels)))
            and (self.images is None or (isinstance(self.images, Tensor) and self.images.dtype == torch.uint8
                                         and self.images.dim() == 4 and len(self.images) == len(self.indices)))
            and (self.dataset is None or isinstance(self.dataset, dict))
        )
        if not ok:
            raise UserError(f"noise file {path} is corrupted: its labels, indices or images have the wrong shape, "
                            "type or range")


class Noise:
    """Base noise: validates the config and draws (or loads) a :class:`NoisePattern`."""

    kind: str = ""
    corrupts_images: bool = False

    # ``from_file`` names a file: a config read back from a checkpoint may not choose it.
    file_args: ClassVar[tuple[str, ...]] = ("from_file",)

    def __init__(self, rate: float = 0.0, seed: int = 0, from_file: str | None = None):
        self.rate = validate.number("rate", rate, lo=0.0, hi=1.0)
        self.seed = validate.number("seed", seed, integer=True)
        self.from_file = None if from_file is None else str(from_file)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, seed={self.seed}, from_file={self.from_file!r})"

    def draw(self, images: Tensor | None, labels: Tensor, num_classes: int, *,
             class_map: Sequence[int] | Tensor | None = None,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
             dataset: dict[str, Any] | None = None) -> NoisePattern:
        """Draw this noise for a training set (``dataset``: its identity, recorded in the
        pattern), or replay ``from_file``, which must match it and this config."""
        labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
        n = len(labels)
        if self.from_file is not None:
            return self._replay(n, dataset)
        if n and (labels.min() < 0 or labels.max() >= num_classes):
            raise UserError(f"labels must lie in [0, {num_classes}); got [{labels.min()}, {labels.max()}]")
        if self.corrupts_images:
            if images is None or images.dim() != 4 or len(images) != n or images.dtype != torch.uint8:
                got = None if images is None else f"{tuple(images.shape)} {images.dtype}"
                raise UserError(f"noise={self.kind} needs uint8 images of shape (N={n}, C, H, W); got {got}")
            images = images.cpu()
        gen = torch.Generator().manual_seed(self.seed)
        chosen, new_labels, new_images = self._draw(images, labels, num_classes, gen,
                                                    class_map=class_map, mean=mean, std=std)
        order = torch.argsort(chosen)  # patterns store sorted indices
        chosen = chosen[order]
        if new_images is not None:
            new_images = new_images[order]
        return NoisePattern(self.kind, self.rate, self.seed, chosen, new_labels, new_images, dataset)

    def _replay(self, n: int, dataset: dict[str, Any] | None, settings: bool = True) -> NoisePattern:
        """The pattern of ``from_file``. Its kind (and, for drawn kinds, rate and seed)
        must be the ones this config states, so logs and reports show what really ran,
        and it must have been drawn for this training set."""
        pattern = NoisePattern.load(self.from_file, num_samples=n)
        if not settings:
            if pattern.kind != self.kind:
                raise UserError(f"noise.from_file={self.from_file} holds {pattern.kind} noise; accepted: a "
                                f"{self.kind} noise file")
            if dataset is not None:
                pattern.check_dataset(dataset, f"noise.from_file={self.from_file}")
            return pattern
        stored = {"noise": pattern.kind, "noise.rate": pattern.rate, "noise.seed": pattern.seed}
        asked = {"noise": self.kind, "noise.rate": self.rate, "noise.seed": self.seed}
        differ = [k for k in stored if stored[k] != asked[k]]
        if differ:
            raise UserError(
                f"noise.from_file={self.from_file} holds {pattern.kind} noise, rate {pattern.rate:g}, seed "
                f"{pattern.seed}, but the config says {', '.join(f'{k}={asked[k]}' for k in differ)}; accepted: "
                f"the file's values ({' '.join(f'{k}={stored[k]}' for k in differ)})")
        if dataset is not None:
            pattern.check_dataset(dataset, f"noise.from_file={self.from_file}")
        return pattern

    def _choose(self, n: int, gen: torch.Generator) -> Tensor:
        """int(rate * n) distinct samples, uniformly at random."""
        return torch.randperm(n, generator=gen)[: int(self.rate * n)]

    def _draw(self, images, labels, num_classes, gen, **kw) -> tuple[Tensor, Tensor, Tensor | None]:
        """Return (chosen indices, full noisy label vector, replacement images or None)."""
        raise NotImplementedError


@trusted("noise")
class UniformLabelNoise(Noise):
    """SAT's ``corrupted_label``: redraw chosen labels over all K classes (may stay correct)."""

    kind = "uniform"

    def _draw(self, images, labels, num_classes, gen, **kw):
        chosen = self._choose(len(labels), gen)
        labels = labels.clone()
        labels[chosen] = torch.randint(0, num_classes, (len(chosen),), generator=gen)
        return chosen, labels, None


@trusted("noise")
class FlipLabelNoise(Noise):
    """Nakkiran et al.: chosen labels move to a uniformly random *different* class."""

    kind = "flip"

    def _draw(self, images, labels, num_classes, gen, **kw):
        chosen = self._choose(len(labels), gen)
        if len(chosen) and num_classes < 2:
            raise UserError(f"noise=flip needs at least 2 classes; got num_classes={num_classes}")
        labels = labels.clone()
        # An offset in [1, K) never maps a class to itself and is uniform over the others.
        offset = torch.randint(1, max(num_classes, 2), (len(chosen),), generator=gen)
        labels[chosen] = (labels[chosen] + offset) % num_classes
        return chosen, labels, None


@trusted("noise")
class AsymmetricLabelNoise(Noise):
    """Class-conditional noise: int(rate * n_c) samples of each mapped class c -> class_map[c]."""

    kind = "asymmetric"

    def draw(self, images, labels, num_classes, *, class_map=None, mean=None, std=None, dataset=None):
        if self.from_file is None:
            if class_map is None:
                raise UserError("noise=asymmetric needs a class_map; accepted: a class -> target list of "
                                "length num_classes (e.g. CIFAR10_ASYMMETRIC)")
            cm = torch.as_tensor(class_map, dtype=torch.int64).flatten()
            if len(cm) != num_classes or (len(cm) and (cm.min() < 0 or cm.max() >= num_classes)):
                raise UserError(f"noise=asymmetric class_map={cm.tolist()} is invalid; accepted: "
                                f"{num_classes} entries in [0, {num_classes})")
            class_map = cm
        return super().draw(images, labels, num_classes, class_map=class_map, mean=mean, std=std, dataset=dataset)

    def _draw(self, images, labels, num_classes, gen, *, class_map, **kw):
        new_labels = labels.clone()
        picked = [torch.empty(0, dtype=torch.int64)]
        for c in range(num_classes):
            target = int(class_map[c])
            if target == c:
                continue
            # Selection uses the clean labels, so swaps (cat<->dog) do not cascade.
            members = torch.nonzero(labels == c).flatten()
            pick = members[torch.randperm(len(members), generator=gen)[: int(self.rate * len(members))]]
            new_labels[pick] = target
            picked.append(pick)
        return torch.cat(picked), new_labels, None


class _ImageNoise(Noise):
    corrupts_images = True


@trusted("noise")
class GaussianImageNoise(_ImageNoise):
    """Chosen images become Gaussian noise with the dataset's per-channel mean/std."""

    kind = "gaussian"

    def _draw(self, images, labels, num_classes, gen, *, mean=None, std=None, **kw):
        c = images.shape[1]
        if mean is None or std is None:
            raise UserError("noise=gaussian needs the dataset's per-channel mean and std")
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if len(mean_t) != c or len(std_t) != c or (std_t < 0).any():
            raise UserError(f"noise=gaussian mean={mean_t.tolist()} std={std_t.tolist()} are invalid; "
                            f"accepted: {c} values each (in [0, 1] units), std >= 0")
        chosen = self._choose(len(labels), gen)
        shape = (len(chosen), *images.shape[1:])
        z = torch.randn(shape, generator=gen)
        pixels = (z * std_t.view(1, c, 1, 1) + mean_t.view(1, c, 1, 1)) * 255
        return chosen, labels.clone(), pixels.round().clamp(0, 255).to(torch.uint8)


def _permute_pixels(images: Tensor, perms: Tensor) -> Tensor:
    """images (m, C, H, W), perms (m, H*W): same permutation across an image's channels."""
    m, c = images.shape[:2]
    flat = images.flatten(2)
    out = flat.gather(2, perms.unsqueeze(1).expand(m, c, -1))
    return out.view_as(images)


class _PixelPermutation(_ImageNoise):
    """Chosen images get their pixel positions permuted (the same permutation across an
    image's channels); the subclasses say which permutations."""

    def _permutations(self, count: int, hw: int, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _draw(self, images, labels, num_classes, gen, **kw):
        chosen = self._choose(len(labels), gen)
        perms = self._permutations(len(chosen), images.shape[2] * images.shape[3], gen)
        return chosen, labels.clone(), _permute_pixels(images[chosen], perms)


@trusted("noise")
class RandomPixelsNoise(_PixelPermutation):
    """Each chosen image gets its own random permutation of its pixels."""

    kind = "random_pixels"

    def _permutations(self, count, hw, gen):
        if not count:
            return torch.empty(0, hw, dtype=torch.int64)
        return torch.stack([torch.randperm(hw, generator=gen) for _ in range(count)])


@trusted("noise")
class ShuffledPixelsNoise(_PixelPermutation):
    """All chosen images share one random permutation of pixel positions."""

    kind = "shuffled_pixels"

    def _permutations(self, count, hw, gen):
        return torch.randperm(hw, generator=gen).expand(count, hw)


@trusted("noise")
class RefinedLabels(Noise):
    """Labels refined by a trained run (``evaluate.py checkpoint=... report=label_errors``
    writes them as ``refined_labels.pt``), replayed from that file: ``noise=refined
    noise.from_file=.../refined_labels.pt``. Nothing is drawn, so no rate or seed."""

    kind = "refined"

    def __init__(self, from_file: str | None = None, rate: float | None = None, seed: int | None = None):
        # rate/seed: accepted because experiments set them for every noise kind; the
        # refined labels' own realised rate is what the run records.
        super().__init__(rate=0.0, seed=0, from_file=from_file)

    def draw(self, images, labels, num_classes, *, class_map=None, mean=None, std=None, dataset=None) -> NoisePattern:
        if self.from_file is None:
            raise UserError("noise=refined needs noise.from_file; accepted: a refined_labels.pt written by "
                            "python evaluate.py checkpoint=... report=label_errors")
        return self._replay(len(labels), dataset, settings=False)
