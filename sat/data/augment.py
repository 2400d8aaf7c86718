"""Batched augmentation on the training device (no per-sample PIL work).

Augmentations take and return uint8 batches (N, C, H, W) and draw from the loader's
generator, so a seeded run is repeatable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class CropFlip:
    """Random crop after zero padding (torchvision's ``RandomCrop(size, padding)``)
    and random horizontal flip, each sample independently."""

    def __init__(self, padding: int = 4, flip: bool = True):
        self.padding, self.flip = padding, flip

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
            flip = torch.rand(n, device=x.device, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, flip={self.flip})"
