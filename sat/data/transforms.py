"""Per-sample image transforms of the streaming loader, as tensor ops.

A transform takes one decoded uint8 image (C, H, W), on the CPU or a GPU, and a
``random.Random`` seeded by :func:`sample_seed` from (run seed, epoch, sample index),
and returns a uint8 (C, S, S) image. The randomness of a sample therefore does not
depend on which worker or in which batch it was read, so the number of workers never
changes a run's results.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from sat.errors import UserError

TRAIN_AUGMENTS = ("random_resized_crop", "pad_crop_flip", "none")

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """SplitMix64's finaliser: a cheap, well-mixed 64-bit hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch (a pure function)."""
    return _splitmix64(_splitmix64(_splitmix64(int(seed) & _MASK64) ^ int(epoch)) ^ int(index))


def _randint(rng: random.Random, low: int, high: int) -> int:
    """Uniform in [low, high], from ``rng.random()`` alone (stable across Python versions)."""
    return low + min(int(rng.random() * (high - low + 1)), high - low)


def _uniform(rng: random.Random, low: float, high: float) -> float:
    return low + (high - low) * rng.random()


class RandomResizedCropFlip:
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` then ``RandomHorizontalFlip``:
    the standard ImageNet training augmentation."""

    random = True

    def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise UserError(f"dataset.scale={list(scale)} is not supported; accepted: 0 < min <= max <= 1")
        self.size, self.scale, self.ratio, self.flip = int(size), tuple(scale), tuple(ratio), flip

    def params(self, height: int, width: int, rng: random.Random) -> tuple[int, int, int, int, bool]:
        """(top, left, crop height, crop width, flip), as torchvision draws them."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _uniform(rng, *self.scale)
            aspect = math.exp(_uniform(rng, *log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return _randint(rng, 0, height - h), _randint(rng, 0, width - w), h, w, self._flip(rng)
        # No fit in 10 tries (extreme aspect ratios): the largest central crop within ``ratio``.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w, self._flip(rng)

    def _flip(self, rng: random.Random) -> bool:
        return self.flip and rng.random() < 0.5

    def __call__(self, image: torch.Tensor, rng: random.Random) -> torch.Tensor:
        top, left, h, w, flip = self.params(image.shape[-2], image.shape[-1], rng)
        out = TF.resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True)
        return out.flip(-1) if flip else out

    def __repr__(self) -> str:
        return f"RandomResizedCropFlip(size={self.size}, scale={self.scale}, flip={self.flip})"


class ResizeCenterCrop:
    """Evaluation transform: shorter side resized to ``resize``, centre crop ``size``."""

    random = False

    def __init__(self, size: int, resize: int) -> None:
        self.size, self.resize = int(size), int(resize)

    def __call__(self, image: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
        if min(image.shape[-2:]) != self.resize:
            image = TF.resize(image, self.resize, antialias=True)
        return TF.center_crop(image, [self.size, self.size])

    def __repr__(self) -> str:
        return f"ResizeCenterCrop(size={self.size}, resize={self.resize})"


class ResizePadCropFlip:
    """The evaluation view, then a random crop after zero padding and a random flip:
    CIFAR's augmentation, for small fixed-size images such as ANIMAL-10N's 64x64."""

    random = True

    def __init__(self, size: int, resize: int, padding: int = 4, flip: bool = True) -> None:
        self.view, self.padding, self.flip = ResizeCenterCrop(size, resize), int(padding), flip

    def __call__(self, image: torch.Tensor, rng: random.Random) -> torch.Tensor:
        image = self.view(image)
        p, size = self.padding, self.view.size
        if p > 0:
            dy, dx = _randint(rng, 0, 2 * p), _randint(rng, 0, 2 * p)
            image = F.pad(image, (p, p, p, p))[..., dy : dy + size, dx : dx + size]
        if self.flip and rng.random() < 0.5:
            image = image.flip(-1)
        return image

    def __repr__(self) -> str:
        return f"ResizePadCropFlip(size={self.view.size}, resize={self.view.resize}, padding={self.padding})"


def train_transform(kind: str, image_size: int, resize: int,
                    scale: tuple[float, float] = (0.08, 1.0)) -> RandomResizedCropFlip | ResizePadCropFlip | ResizeCenterCrop:
    """The training transform a dataset config names (``dataset.train_augment``)."""
    if kind == "random_resized_crop":
        return RandomResizedCropFlip(image_size, scale=tuple(scale))
    if kind == "pad_crop_flip":
        return ResizePadCropFlip(image_size, resize)
    if kind == "none":
        return ResizeCenterCrop(image_size, resize)
    raise UserError(f"dataset.train_augment={kind!r} is not supported; accepted: {', '.join(TRAIN_AUGMENTS)}")


def eval_transform(image_size: int, resize: int) -> ResizeCenterCrop:
    return ResizeCenterCrop(image_size, resize)
