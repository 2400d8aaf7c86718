"""Batched augmentation on the training device (no per-sample PIL work): the ``augment`` group.

An augmentation takes a uint8 batch (N, C, H, W) on the device and the loader's
generator, and returns a batch (uint8, or float in [0, 1]) or a tuple of batches (views
of the same samples: :class:`sat.data.views.TwoViews`). Every sample draws its own parameters, and all randomness comes
from the loader's generator, so a seeded run is repeatable and resumes exactly. The
same augmentation runs whichever loader (memory or files) feeds it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from sat.config import validate
from sat.errors import UserError


class CropFlip:
    """Random crop after zero padding (torchvision's ``RandomCrop(size, padding)``)
    and random horizontal flip, each sample independently."""

    def __init__(self, padding: int = 4, flip: bool = True):
        self.padding = validate.number("padding", padding, lo=0, integer=True)
        self.flip = validate.flag("flip", flip)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.padding > 0:
            p = self.padding
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(2 * p + 1, (n, 1), device=x.device, generator=generator)
            dx = torch.randint(2 * p + 1, (n, 1), device=x.device, generator=generator)
            rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (n, 1, h, 1)
            cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (n, 1, 1, w)
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            channel = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[batch, channel, rows, cols]
        if self.flip:
            x = _flip(x, generator)
        return x

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, flip={self.flip})"


def _flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def seed_from(generator: torch.Generator) -> int:
    """A seed determined by ``generator``'s state, which is then advanced on its device: a
    host integer from a device generator without waiting for the device (``int(randint)``
    would, every batch)."""
    digest = hashlib.blake2b(generator.get_state().numpy().tobytes(), digest_size=8).digest()
    torch.randint(2, (1,), generator=generator, device=generator.device)
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded_by(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG (what kornia draws from) seeded from
    ``generator``, and restored afterwards: the loader's generator stays the only source
    of randomness (exact resume, DDP processes in step)."""
    seed = seed_from(generator)
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


class RandomResizedCrop:
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` then a random horizontal
    flip, batched (kornia), to the batch's own size: the standard ImageNet training
    augmentation. On a folder dataset it crops the decoded view (shorter side resized to
    ``dataset.resize``, centre crop ``dataset.image_size``), which every loader gives."""

    def __init__(self, scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                 flip: bool = True) -> None:
        self.scale, self.ratio = _range("scale", scale, 0.0, 1.0), _range("ratio", ratio, 0.0, None)
        self.flip = validate.flag("flip", flip)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import kornia.augmentation as K

        crop = K.RandomResizedCrop(tuple(x.shape[-2:]), scale=self.scale, ratio=self.ratio)
        with seeded_by(generator, x.device):
            out = crop(x.float().div_(255))
        return _flip(out, generator) if self.flip else out

    def __repr__(self) -> str:
        return f"RandomResizedCrop(scale={self.scale}, ratio={self.ratio}, flip={self.flip})"


def _range(key: str, value: Sequence[float], low: float, high: float | None) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        a = b = float("nan")
    if not (low < a <= b and (high is None or b <= high)):
        upper = f" <= {high:g}" if high is not None else ""
        raise UserError(key=key, value=list(value) if isinstance(value, Sequence) else value,
                        problem="is not supported", accepted=f"[min, max] with {low:g} < min <= max{upper}")
    return a, b
