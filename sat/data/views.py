"""Two views of each image, the one type for every method that needs them: the
self-supervised methods (SSL-SAT, BYOL, SimSiam, SimCLR) and DivideMix. The loader's ``x``
becomes ``(v1, v2)`` (:class:`TwoViews`); a method takes them apart with :func:`two_views`.

Each view is either its own draw of a per-view augmentation (``augment=crop_flip_x2``:
DivideMix's two augmentations) or, without one, the self-supervised recipe, SimCLR/BYOL's,
batched on the device with kornia.augmentation, each sample with its own random parameters:
random resized crop (scale 0.08-1), horizontal flip,
colour jitter (brightness, contrast, saturation, hue 0.4/0.4/0.2/0.1, p 0.8), grayscale
(p 0.2), Gaussian blur (sigma 0.1-2, kernel about a tenth of the image; BYOL's p 1.0 /
0.1, only for images of ``blur_min_size`` pixels and more: STL-10, folder datasets) and
solarize (threshold 0.5, BYOL's asymmetric p 0 / 0.2). The two views differ only in
the blur and solarize probabilities.

Single-channel images (digits): saturation, hue and grayscale are identities on a
grey image, so only brightness and contrast are jittered and grayscale is skipped.

Randomness: kornia draws from torch's global RNG, so each call forks it, seeds it from
the loader's generator (a hash of its state, which is then advanced on its device:
no host sync) and restores it afterwards. The loader's generator is thus the only
source, as an exact resume and DDP need, and the global RNG is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sat.config import validate
from sat.data.augment import seed_from
from sat.errors import UserError


def _pair(name: str, value: Sequence[float], lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    values = list(value)
    if len(values) != 2:
        raise UserError(key=name, value=values, problem="is not a pair", accepted="[view 1, view 2]")
    return tuple(validate.number(f"{name}[{i}]", v, lo=lo, hi=hi) for i, v in enumerate(values))


# an augmentation of one view: (uint8 batch (N, C, H, W), the loader's generator) -> a batch
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def two_views(x: Any, who: str, one_view_serves: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's two views ``(v1, v2)``, as the loader gives them from :class:`TwoViews`.
    ``one_view_serves``: a single batch is used as both views (DivideMix without two
    augmentations); otherwise ``who`` (the method, as the message names it) refuses it."""
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise UserError(f"{who} needs 2 views per sample but the loader gives {len(x)}; accepted: an augment "
                            "of two views (augment=crop_flip_x2, augment=ssl_cifar|ssl_stl10|ssl_digits)")
        return x[0], x[1]
    if one_view_serves:
        return x, x
    raise UserError(f"{who} trains on two views per image; accepted: an augment that returns them, "
                    "augment=ssl_cifar|ssl_stl10|ssl_digits (or crop_flip_x2)")


class TwoViews:
    """``augment(x_uint8 (N, C, H, W), generator) -> (v1, v2)``: each view its own draw of
    ``view`` where one is given (``augment=crop_flip_x2``, ``augment.view.padding=2``), else of the self-supervised
    recipe (the other arguments, which apply only then; float views in [0, 1])."""

    def __init__(self, view: Augment | None = None, crop_scale: Sequence[float] = (0.08, 1.0), flip_p: float = 0.5,
                 jitter: Sequence[float] = (0.4, 0.4, 0.2, 0.1), jitter_p: float = 0.8, grayscale_p: float = 0.2,
                 blur_p: Sequence[float] = (1.0, 0.1), solarize_p: Sequence[float] = (0.0, 0.2),
                 blur_min_size: int = 96):
        self.crop_scale = _pair("crop_scale", crop_scale)
        if self.crop_scale[0] <= 0 or self.crop_scale[0] > self.crop_scale[1]:
            raise UserError(key="crop_scale", value=list(crop_scale), problem="is not a range",
                            accepted="[min, max] with 0 < min <= max <= 1")
        self.flip_p = validate.number("flip_p", flip_p, lo=0.0, hi=1.0)
        jitter = list(jitter)
        if len(jitter) != 4:
            raise UserError(key="jitter", value=jitter, problem="needs 4 values",
                            accepted="[brightness, contrast, saturation, hue]")
        self.jitter = [validate.number(f"jitter[{i}]", v, lo=0.0, hi=0.5 if i == 3 else None)
                       for i, v in enumerate(jitter)]
        self.jitter_p = validate.number("jitter_p", jitter_p, lo=0.0, hi=1.0)
        self.grayscale_p = validate.number("grayscale_p", grayscale_p, lo=0.0, hi=1.0)
        self.blur_p = _pair("blur_p", blur_p)
        self.solarize_p = _pair("solarize_p", solarize_p)
        self.blur_min_size = validate.positive_int("blur_min_size", blur_min_size)
        if view is not None and not callable(view):
            raise UserError(key="view", value=view, problem="is not an augmentation",
                            accepted="an augment node (sat.data.augment.CropFlip, ...) or null (the self-supervised recipe)")
        self.view = view
        self._pipelines: dict[tuple, tuple[nn.Module, nn.Module]] = {}

    def pipeline(self, view: int, channels: int, height: int, width: int) -> nn.Module:
        import kornia.augmentation as K

        # cropping_mode=resample: one batched warp (the default slices sample by sample)
        ops: list[nn.Module] = [K.RandomResizedCrop((height, width), scale=self.crop_scale, cropping_mode="resample"),
                                K.RandomHorizontalFlip(p=self.flip_p)]
        b, c, s, h = self.jitter
        if channels == 3:
            ops += [K.ColorJitter(b, c, s, h, p=self.jitter_p), K.RandomGrayscale(p=self.grayscale_p)]
        else:  # saturation, hue and grayscale do nothing to a grey image
            ops.append(K.ColorJitter(b, c, 0.0, 0.0, p=self.jitter_p))
        if min(height, width) >= self.blur_min_size and self.blur_p[view] > 0:
            kernel = 2 * (min(height, width) // 20) + 1  # odd, about a tenth of the image (BYOL: 23 at 224)
            ops.append(K.RandomGaussianBlur(kernel, (0.1, 2.0), p=self.blur_p[view]))
        if self.solarize_p[view] > 0:
            ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=self.solarize_p[view]))
        return nn.Sequential(*ops)

    def _for(self, x: torch.Tensor) -> tuple[nn.Module, nn.Module]:
        key = (*x.shape[1:], x.device)
        if key not in self._pipelines:
            self._pipelines[key] = tuple(self.pipeline(v, *x.shape[1:]).to(x.device) for v in (0, 1))
        return self._pipelines[key]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.view is not None:  # two independent draws, in order, from the loader's generator
            first = self.view(x, generator)
            return first, self.view(x, generator)
        pipelines = self._for(x)
        seed = seed_from(generator)
        images = x.float().div(255)
        devices = [x.device.index if x.device.index is not None else 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=x.device.type if devices else "cuda"):
            torch.default_generator.manual_seed(seed)
            if devices:
                torch.cuda.default_generators[devices[0]].manual_seed(seed)
            return tuple(p(images).clamp_(0.0, 1.0) for p in pipelines)

    def __repr__(self) -> str:
        if self.view is not None:
            return f"TwoViews({self.view!r})"
        return (f"TwoViews(crop_scale={self.crop_scale}, flip_p={self.flip_p}, jitter={self.jitter}, "
                f"jitter_p={self.jitter_p}, grayscale_p={self.grayscale_p}, blur_p={self.blur_p}, "
                f"solarize_p={self.solarize_p}, blur_min_size={self.blur_min_size})")
