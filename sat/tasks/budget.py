"""The one check of the memory a task will need, made before anything is allocated:
train, evaluate and attack pass through :func:`check_memory`.

What it adds up (lower bounds, so a run that would have fitted is never refused): the
data the source says it will hold (:meth:`DataSource.memory_bytes`, from its settings or
its files' headers and sizes, before reading), the model's and the method's own networks
(fp32 weights; training adds gradients and two optimizer buffers each) and state
buffers (a method's per-sample state), and one batch's layer outputs. Everything is
counted on the meta device (:func:`sat.run.budget.model_memory`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sat.errors import UserError
from sat.run.budget import GiB, available_bytes, model_memory

BYTES_PER_PARAMETER = {"train": 16, "evaluate": 4}  # train: weights, gradients, two optimizer buffers (fp32)


def method_memory(build_method: Callable[[], Any], build_model: Callable[[], nn.Module], num_samples: int,
                  num_classes: int) -> tuple[int, int] | None:
    """``(parameters, state bytes)`` of the method's own networks (heads, a peer) and
    buffers (per-sample state for ``num_samples`` labels), built on the meta device;
    None where the method cannot be built there (its real build then reports any error)."""
    try:
        with torch.device("meta"):
            method = build_method()
            method.attach_model(build_model)
            method.setup(torch.zeros(num_samples, dtype=torch.long), num_classes)
    except UserError:
        raise
    except Exception:  # noqa: BLE001  (an op without a meta kernel: counted as nothing)
        return None
    params = sum(p.numel() for p in method.parameters())
    state = sum(b.numel() * b.element_size() for b in method.buffers())
    return params, state


def check_memory(task: str, *, device: torch.device, build_model: Callable[[], nn.Module],
                 input_shape: Sequence[int], batch_size: int, source: Any = None,
                 method: tuple[int, int] | None = None, what: str = "this run") -> None:
    """Refuse, in one line, a ``task`` (``train`` or ``evaluate``) whose data, networks and
    one batch's activations cannot fit in ``device``'s memory, with the figures and the
    settings that make it smaller."""
    try:
        params, per_sample = model_memory(build_model, input_shape)
    except UserError:
        raise
    except Exception:  # noqa: BLE001  (a model the meta device cannot build: its real build reports any error,
        params, per_sample = 0, None  # but only after the data is read: the data is still counted)
    head_params, state = method or (0, 0)
    data = (source.memory_bytes() if source is not None else None) or 0
    parts = {
        "data": data,
        "networks": BYTES_PER_PARAMETER[task] * (params + head_params),
        "method state": state,
        "activations": 4 * (per_sample or 0) * int(batch_size) * (2 if task == "train" else 1),
    }
    needed, have = sum(parts.values()), available_bytes(device)
    if needed > have:
        shown = ", ".join(f"{k} {v / GiB:,.1f}" for k, v in parts.items() if v)
        heads = f", smaller networks of the method ({head_params:,} parameters: its method.*_dim sizes)" \
            if head_params else ""
        raise UserError(f"{what} needs at least {needed / GiB:,.1f} GiB ({shown} GiB; {params + head_params:,} "
                        f"parameters), more than the {have / GiB:,.1f} GiB of {torch.device(device)}; accepted: a "
                        f"smaller model (model.width, model.depth){heads}, trainer.batch_size, or less data "
                        "(dataset.num_train, dataset.image_size)")
