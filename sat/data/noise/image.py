"""Image noise (labels kept): the chosen images replaced by Gaussian noise with the
dataset's statistics, or their pixels permuted (each its own permutation, or one shared)."""

from __future__ import annotations

import torch
from torch import Tensor

from sat.config.trust import trusted
from sat.data.noise.base import Noise
from sat.errors import UserError


class _ImageNoise(Noise):
    corrupts_images = True


@trusted("noise", "sat.data.noise.GaussianImageNoise")  # (its name before 0.4)
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


@trusted("noise", "sat.data.noise.RandomPixelsNoise")  # (its name before 0.4)
class RandomPixelsNoise(_PixelPermutation):
    """Each chosen image gets its own random permutation of its pixels."""

    kind = "random_pixels"

    def _permutations(self, count, hw, gen):
        if not count:
            return torch.empty(0, hw, dtype=torch.int64)
        return torch.stack([torch.randperm(hw, generator=gen) for _ in range(count)])


@trusted("noise", "sat.data.noise.ShuffledPixelsNoise")  # (its name before 0.4)
class ShuffledPixelsNoise(_PixelPermutation):
    """All chosen images share one random permutation of pixel positions."""

    kind = "shuffled_pixels"

    def _permutations(self, count, hw, gen):
        return torch.randperm(hw, generator=gen).expand(count, hw)
