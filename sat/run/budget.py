"""What memory a run will need and what the machine has, counted before anything is
allocated (the check that adds it up and refuses: :mod:`sat.tasks.budget`)."""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

GiB = 1024 ** 3


def available_bytes(device: torch.device | str = "cpu") -> int:
    """The memory of ``device``: a GPU's total memory, or the host's RAM (or this
    process's address-space limit, where one is set lower)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[1])
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return min(ram, soft) if soft != resource.RLIM_INFINITY else ram


def images_bytes(num_samples: int, input_shape: Sequence[int], bytes_per_value: int = 1) -> int:
    return int(num_samples) * math.prod(int(d) for d in input_shape) * bytes_per_value


# --- models ----------------------------------------------------------------------------------


def model_memory(build: Callable[[], nn.Module], input_shape: Sequence[int]) -> tuple[int, int | None]:
    """``(parameters, activations per sample)`` of the model ``build`` makes, counted on
    the meta device (nothing allocated). Activations: the elements of every layer's
    output for one sample; None where the model cannot run on the meta device."""
    with torch.device("meta"):
        model = build()
    params = sum(p.numel() for p in model.parameters())
    outputs = [0]

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            outputs[0] += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.empty(1, *input_shape, device="meta"))
    except Exception:  # an op without a meta kernel: the parameters alone are still counted
        return params, None
    finally:
        for h in hooks:
            h.remove()
    return params, outputs[0]
