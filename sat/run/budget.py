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


def model_memory(build: Callable[[], nn.Module], input_shape: Sequence[int],
                 training: bool = True) -> tuple[int, int | None]:
    """``(parameters, activation bytes per sample)`` of the model ``build`` makes, counted
    on the meta device (nothing allocated); None where the model cannot run there.

    Training: every tensor a forward pass keeps for its backward pass (each storage once,
    the model's own parameters and buffers left out: conv and linear inputs, BatchNorm
    inputs, ReLU outputs, pooling indices, dropout masks), plus the float input batch.
    This is what is alive when backward starts, a lower bound of a step's peak (measured
    on a CPU: 0.5-0.8x of the process's growth over one step, see
    ``benchmarks/memory_estimate.py``). Evaluation: the largest layer's input and output."""
    with torch.device("meta"):
        model = build()
    params = sum(p.numel() for p in model.parameters())
    try:
        per_sample = _saved_per_sample(model, input_shape) if training else _widest_layer(model, input_shape)
    except Exception:  # an op without a meta kernel: the parameters alone are still counted
        return params, None
    return params, per_sample + (images_bytes(1, input_shape, 4) if training else 0)


def _saved_per_sample(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Bytes a training forward pass saves for backward, per sample: the growth from a
    batch of 2 to one of 4 (BatchNorm refuses one sample per channel; fixed sizes drop out)."""
    own = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}

    def saved(batch: int) -> int:
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage._cdata not in own:
                storages[storage._cdata] = storage.nbytes()
            return t

        model.train()
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(torch.empty(batch, *input_shape, device="meta"))
            out = out[0] if isinstance(out, (tuple, list)) else out
            out.float().logsumexp(-1).sum()  # the loss (its own saved logits count too)
        return sum(storages.values())

    return max(0, (saved(4) - saved(2)) // 2)


def _widest_layer(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Bytes per sample of the largest input + output of one layer in an inference pass."""
    widest = [0]

    def measure(_module: nn.Module, inputs: Any, output: Any) -> None:
        tensors = [t for t in (*inputs, output) if isinstance(t, torch.Tensor)]
        widest[0] = max(widest[0], sum(t.numel() * t.element_size() for t in tensors))

    hooks = [m.register_forward_hook(measure) for m in model.modules() if not list(m.children())]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.empty(2, *input_shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return widest[0] // 2
