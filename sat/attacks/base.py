"""Shared pieces of the L_inf attacks: eps parsing, projection, input gradients,
and batched robust-accuracy evaluation."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import nn

from sat.config import validate
from sat.errors import UserError

_ACCEPTED = "a float in [0,1] like 0.031 or a fraction like 8/255"


def parse_eps(value: float | int | str, name: str = "eps", upper: float | None = 1.0) -> float:
    """An L_inf radius in [0,1] units from a float/int (0.031) or a pixel-unit
    fraction string ("8/255"). Results must record which one was used: 0.031 != 8/255.
    ``upper=None`` lifts the bound (L1/L2 radii)."""
    if isinstance(value, bool):  # bool is an int subclass; True is not a radius
        raise UserError(key=name, value=value, problem="is not a number", accepted=_ACCEPTED)
    if isinstance(value, numbers.Real):
        eps = float(value)
    elif isinstance(value, str):
        parts = value.split("/")
        try:
            nums = [float(p) for p in parts]
            if len(nums) > 2:
                raise ValueError
            eps = nums[0] / nums[1] if len(nums) == 2 else nums[0]
        except (ValueError, ZeroDivisionError):
            raise UserError(key=name, value=value, problem="is not a number", accepted=_ACCEPTED) from None
    else:
        raise UserError(key=name, value=value, problem="is not a number", accepted=_ACCEPTED)
    hi = math.inf if upper is None else upper
    if not 0.0 <= eps <= hi:  # also rejects nan
        raise UserError(key=name, value=value, problem="is out of range",
                        accepted=_ACCEPTED if upper == 1.0 else f"a number in [0, {hi}]")
    return eps


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto the L_inf ball of radius ``eps`` around ``x`` and onto [0,1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def input_grad(loss_fn: Callable[[torch.Tensor], torch.Tensor], x_adv: torch.Tensor) -> torch.Tensor:
    """Gradient of ``loss_fn(x_adv)`` w.r.t. ``x_adv`` only.

    ``autograd.grad`` with ``x_adv`` as the sole input never writes a parameter's
    ``.grad`` and lets the engine skip the weight-gradient kernels."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(x_adv), [x_adv])
    return grad


def model_device(model: nn.Module, default: torch.device) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else default


class Attack:
    """``attack(model, x, y) -> x_adv``: ``model`` in eval mode, ``x`` in [0,1];
    ``x_adv`` in [0,1] and within ``eps`` of ``x`` in L_inf."""

    eps: float

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1)


def robust_accuracy(
    model: nn.Module,
    attack: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 256,
) -> dict[str, float]:
    """Natural and robust accuracy of ``model`` on ``(x, y)`` under ``attack``.

    Batches move to the model's device, so ``x`` may stay on the CPU. A sample counts
    as robust only if it is classified correctly after the attack."""
    batch_size = validate.positive_int("batch_size", batch_size)
    was_training = model.training
    model.eval()
    device = model_device(model, x.device)
    natural = robust = 0
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            natural += int((_predict(model, xb) == yb).sum())
            x_adv = attack(model, xb, yb)
            robust += int((_predict(model, x_adv) == yb).sum())
    finally:
        model.train(was_training)
    n = max(len(x), 1)
    return {"natural": natural / n, "robust": robust / n, "eps": float(getattr(attack, "eps", float("nan")))}
