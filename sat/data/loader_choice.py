"""Which loader a run uses: ``dataset.loader=device|stream|auto``.

``device`` keeps every image on the training device as uint8 (DeviceLoader: fastest,
batched augmentation, no host work); ``stream`` reads from disk every epoch
(StreamLoader: any size). ``auto`` picks ``device`` when the decoded images fit in a
share of the device's memory, so small folder datasets (ANIMAL-10N) need no workers
and Clothing1M or WebVision stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sat.errors import UserError

CHOICES = ("auto", "device", "stream")
CPU_LIMIT_BYTES = 4 * 2**30  # on the CPU the "device" is host memory: keep a modest cap
CUDA_SHARE = 0.25  # the rest is for the model, activations and the allocator


def dataset_bytes(num_samples: int, input_shape: Sequence[int]) -> int:
    """Bytes of ``num_samples`` uint8 images of ``input_shape`` (C, H, W)."""
    c, h, w = (int(v) for v in input_shape)
    return int(num_samples) * c * h * w


def device_limit_bytes(device: torch.device) -> int:
    """How many bytes of uint8 images ``auto`` allows on ``device``."""
    if device.type == "cuda":
        return int(CUDA_SHARE * torch.cuda.get_device_properties(device).total_memory)
    return CPU_LIMIT_BYTES


def choose_loader(requested: str, num_samples: int, input_shape: Sequence[int], device: torch.device | str,
                  limit_bytes: int | None = None) -> str:
    """``"device"`` or ``"stream"``. ``num_samples`` counts every image the run keeps
    on the device (train, validation and test)."""
    if requested not in CHOICES:
        raise UserError(f"dataset.loader={requested!r} is not supported; accepted: {', '.join(CHOICES)}")
    if requested != "auto":
        return requested
    limit = device_limit_bytes(torch.device(device)) if limit_bytes is None else limit_bytes
    return "device" if dataset_bytes(num_samples, input_shape) <= limit else "stream"
