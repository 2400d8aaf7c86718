"""The one check of the memory a task will need, made before anything is allocated:
train, evaluate and attack pass through :func:`check_memory`.

What it adds up (lower bounds, so a run that would have fitted is never refused): the
data the source says it will hold (:meth:`DataSource.memory_bytes`, from its settings or
its files' headers and sizes, before reading), the model's and the method's own networks
(fp32 weights; training adds gradients and two optimizer buffers each) and state
buffers (a method's per-sample state), and one batch's activations (training: every
tensor the forward pass keeps for backward, and the batch). Everything is counted on the
meta device (:func:`sat.run.budget.model_memory`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass
class Estimate:
    """What a task will hold at least, in bytes, by part (data, networks, method state,
    activations), counted before anything is allocated."""

    parts: dict[str, int]
    parameters: int
    activations_per_sample: int  # bytes

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def estimate(task: str, *, build_model: Callable[[], nn.Module], input_shape: Sequence[int], batch_size: int,
             source: Any = None, method: tuple[int, int] | None = None, half_precision: bool = False) -> Estimate:
    """The memory a ``task`` (``train`` or ``evaluate``) needs at least (without the
    model where it cannot be built on the meta device).
    ``half_precision``: activations under bf16 autocast (counted at half their fp32 size)."""
    try:
        params, per_sample = model_memory(build_model, input_shape, training=task == "train")
    except UserError:
        raise
    except Exception:  # noqa: BLE001  (a model the meta device cannot build: its real build reports any error,
        params, per_sample = 0, None  # but only after the data is read: the data is still counted)
    head_params, state = method or (0, 0)
    per_sample = (per_sample or 0) // (2 if half_precision else 1)
    parts = {
        "data": (source.memory_bytes() if source is not None else None) or 0,
        "networks": BYTES_PER_PARAMETER[task] * (params + head_params),
        "method state": state,
        f"activations at batch {int(batch_size)} of {'x'.join(map(str, input_shape))}": per_sample * int(batch_size),
    }
    return Estimate(parts, params + head_params, per_sample)


def check_memory(task: str, *, device: torch.device, build_model: Callable[[], nn.Module],
                 input_shape: Sequence[int], batch_size: int, source: Any = None,
                 method: tuple[int, int] | None = None, what: str = "this run", half_precision: bool = False,
                 preset: str | None = None) -> None:
    """Refuse, in one line, a ``task`` whose data, networks and one batch's activations
    (:func:`estimate`) cannot fit in ``device``'s memory, with the figures and the
    settings that make it smaller: a ``trainer.batch_size`` that fits and ``preset``, a
    command made for this device (``experiment=image_folder_cpu``)."""
    need = estimate(task, build_model=build_model, input_shape=input_shape, batch_size=batch_size, source=source,
                    method=method, half_precision=half_precision)
    have = available_bytes(device)
    if need.total <= have:
        return
    shown = ", ".join(f"{k} {v / GiB:,.1f}" for k, v in need.parts.items() if v)
    activations = list(need.parts.values())[-1]
    # The largest batch whose lower bound fits, halved: measured peaks reach up to 2x the bound.
    fits = (have - need.total + activations) // need.activations_per_sample // 2 if need.activations_per_sample else 0
    smaller = [f"trainer.batch_size<={fits}"] if task == "train" and fits >= 1 else []
    heads = method[0] if method else 0
    smaller += ["a smaller model (model.width, model.depth) or input (dataset.image_size)",
                f"smaller networks of the method ({heads:,} parameters: its method.*_dim sizes)" if heads else "",
                "less data (dataset.num_train)" if need.parts["data"] else "", preset or ""]
    raise UserError(f"{what} needs at least {need.total / GiB:,.1f} GiB ({shown} GiB; {need.parameters:,} "
                    f"parameters), more than the {have / GiB:,.1f} GiB of {torch.device(device)}; accepted: "
                    + ", ".join(s for s in smaller if s))
