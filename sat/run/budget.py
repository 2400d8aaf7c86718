"""Memory a run will need, estimated before anything is allocated, so that a size no
machine holds (``model.width=20000``, a crafted checkpoint's ``dataset.num_train=2e7``)
is refused in one line with the figure instead of taking the machine's memory or ending
with the allocator's message.

The estimates are lower bounds of what the run allocates (weights, gradients and two
optimizer buffers per parameter in fp32; one forward pass's layer outputs per sample);
refusing only what cannot fit even then never refuses a run that would have fitted.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sat.errors import UserError

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


def check_fits(what: str, needed: int, device: torch.device | str, accepted: str, share: float = 1.0) -> None:
    """A one-line UserError when ``needed`` bytes exceed ``share`` of what ``device`` has."""
    have = int(available_bytes(device) * share)
    if needed > have:
        of = f"the {have / GiB:,.1f} GiB" + (f" ({share:.0%} of the memory)" if share < 1 else "")
        raise UserError(f"{what} needs at least {needed / GiB:,.1f} GiB, more than {of} of "
                        f"{torch.device(device)}; accepted: {accepted}")


# --- data ------------------------------------------------------------------------------------


def images_bytes(num_samples: int, input_shape: Sequence[int], bytes_per_value: int = 1) -> int:
    return int(num_samples) * math.prod(int(d) for d in input_shape) * bytes_per_value


def check_source_size(source: Any, device: torch.device | str = "cpu") -> None:
    """For a data source that says how many samples it makes (``num_train``, ``num_test``:
    the synthetic generator), refuse sizes whose images cannot fit before generating
    them (drawn as float32, kept as uint8) in half the memory (the run needs the rest)."""
    counts = [getattr(source, k, None) for k in ("num_train", "num_test")]
    if not all(isinstance(n, int) for n in counts):
        return
    shape = tuple(getattr(source, "input_shape"))
    needed = images_bytes(sum(counts), shape, bytes_per_value=4 + 1)
    check_fits(f"dataset with {counts[0]:,} train + {counts[1]:,} test images of shape {shape}", needed, device,
               "fewer samples (dataset.num_train, dataset.num_test)", share=0.5)


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


def check_model_size(build: Callable[[], nn.Module], input_shape: Sequence[int], batch_size: int,
                     device: torch.device | str, what: str = "model") -> int:
    """Refuse a model whose training state (fp32 weights, gradients, two optimizer
    buffers) and one batch's layer outputs cannot fit on ``device``. Returns the
    parameter count."""
    params, per_sample = model_memory(build, input_shape)
    needed = 4 * (4 * params + (per_sample or 0) * int(batch_size))
    check_fits(f"{what} with {params:,} parameters" + (f" and {per_sample:,} activations per sample"
                                                         if per_sample else ""),
               needed, device, "a smaller model (model.width, model.depth) or trainer.batch_size")
    return params
