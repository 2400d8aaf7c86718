"""What every noise shares: its checked settings, a private seeded generator (the
global RNG is never touched, so noise does not depend on model init order), and the
replay of a saved pattern (``from_file``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from sat.config import trust, validate
from sat.config.roles import FILE
from sat.data.noise.pattern import UNLABELED, NoisePattern
from sat.errors import UserError


class Noise:
    """Base noise: validates the config and draws (or loads) a :class:`NoisePattern`."""

    kind: str = ""
    corrupts_images: bool = False

    # ``from_file`` names a file: a config read back from a checkpoint may not choose it.
    arg_roles: ClassVar[dict[str, tuple[str, ...]]] = {"from_file": (FILE,)}

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
        if n and (labels.min() < UNLABELED or labels.max() >= num_classes):
            raise UserError(f"labels must lie in [0, {num_classes}); got [{labels.min()}, {labels.max()}]")
        if n and labels.min() == UNLABELED:  # images without labels (STL-10's): nothing to corrupt but at rate 0
            if self.rate > 0:
                raise UserError(key="rate", value=self.rate, problem=f"corrupts labels, but {int((labels < 0).sum())} "
                                "training images have none", accepted="rate=0 for a dataset with unlabeled images")
            empty = torch.zeros(0, dtype=torch.int64)
            return NoisePattern(self.kind, self.rate, self.seed, empty, labels.clone(), None, dataset)
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
                raise UserError(key="from_file", value=self.from_file, problem=f"holds {pattern.kind} noise",
                                accepted=f"a {self.kind} noise file")
            if dataset is not None:
                pattern.check_dataset(dataset, f"{{key}}={self.from_file}", key="from_file")
            return pattern
        # the kind is the noise's choice (noise=flip), rate and seed its arguments
        stored = {"noise": pattern.kind, "{.rate}": pattern.rate, "{.seed}": pattern.seed}
        asked = {"noise": self.kind, "{.rate}": self.rate, "{.seed}": self.seed}
        differ = [k for k in stored if stored[k] != asked[k]]
        if differ:
            raise UserError(
                f"{{key}}={self.from_file} holds {pattern.kind} noise, rate {pattern.rate:g}, seed "
                f"{pattern.seed}, but the config says {', '.join(f'{k}={asked[k]}' for k in differ)}; accepted: "
                f"the file's values ({' '.join(f'{k}={stored[k]}' for k in differ)})", key="from_file")
        if dataset is not None:
            pattern.check_dataset(dataset, f"{{key}}={self.from_file}", key="from_file")
        return pattern

    def _choose(self, n: int, gen: torch.Generator) -> Tensor:
        """int(rate * n) distinct samples, uniformly at random."""
        return torch.randperm(n, generator=gen)[: int(self.rate * n)]

    def _draw(self, images, labels, num_classes, gen, **kw) -> tuple[Tensor, Tensor, Tensor | None]:
        """Return (chosen indices, full noisy label vector, replacement images or None)."""
        raise NotImplementedError


trust.kind_base("noise", Noise)
