"""The device and the autocast precision a task runs with."""

from __future__ import annotations

from typing import Any

import torch

from sat.errors import UserError


def resolve_device(name: Any, job: int | None = None) -> torch.device:
    """``auto`` is CUDA when present; in a sweep on a machine with several GPUs, job
    ``n`` gets GPU ``n % count`` (Hydra's launchers assign no GPUs themselves)."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", (job or 0) % torch.cuda.device_count())
    try:
        device = torch.device(str(name))
    except (RuntimeError, ValueError):
        raise UserError(f"device={name!r} is not a device; accepted: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but CUDA is not available here; accepted: auto, cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device={name!r} is not supported; accepted: auto, cpu, cuda, cuda:N")
    return device


def resolve_precision(precision: str, device: torch.device, key: str = "trainer.precision") -> torch.dtype | None:
    """The autocast dtype: bf16 on CUDA under ``auto``, none (fp32) on the CPU."""
    choices = {"auto": torch.bfloat16 if device.type == "cuda" else None, "bf16": torch.bfloat16, "fp32": None}
    if precision not in choices:
        raise UserError(f"{key}={precision!r} is not supported; accepted: {', '.join(choices)}")
    return choices[precision]
