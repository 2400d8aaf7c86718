"""A continuation that changes the learning-rate schedule before the change acts.

A run stopped at epoch 50 of a step schedule whose first milestone is 100 has used
nothing of its ``gamma`` or its later milestones yet: continuing it with other values
trains what a run started with them would have trained. So a changed ``scheduler`` is
accepted exactly when every epoch run so far had the same learning rate under the new
settings as under the stored ones (both schedules are replayed on one throwaway
parameter); the checkpoint's scheduler state is then replaced by the new schedule's at
the same epoch. Any other change is refused by the resume policy.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from sat.config.build import USER_CONFIG

_PLAIN = (bool, int, float, str, type(None))


def _plain_arguments(node: Any) -> dict[str, Any] | None:
    """A stored scheduler node's arguments, if they are plain values (a checkpoint's
    config is data: nothing in it is instantiated but the command's own class)."""
    if not isinstance(node, dict):
        return None
    args = {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}
    for value in args.values():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, _PLAIN) for v in values):
            return None
    return args


def _replay(make_optimizer: Any, make_scheduler: Any, steps: int) -> tuple[list[float], Any, Any]:
    """The learning rate of each of the first ``steps + 1`` epochs, and the optimizer and
    scheduler after ``steps`` epochs."""
    param = torch.zeros(1, requires_grad=True)
    optimizer = make_optimizer([param])
    scheduler = make_scheduler(optimizer)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        optimizer.step()  # no gradient: nothing moves, but the scheduler sees a step
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates, optimizer, scheduler


def adopt_unused_schedule(cfg: Any, state: dict[str, Any]) -> bool:
    """If the command's ``scheduler`` differs from the checkpoint's only in what no epoch
    run so far has used, put the new schedule's state (at the checkpoint's epoch) into
    ``state`` and return True; otherwise leave ``state`` as it is and return False."""
    stored = _plain_arguments(state["config"].get("scheduler"))
    make_optimizer = USER_CONFIG.build(cfg.optimizer, "optimizer")
    make_new = USER_CONFIG.build(cfg.scheduler, "scheduler")
    groups = state["optimizer"].get("param_groups", [])
    if stored is None or not isinstance(make_new, functools.partial) or len(groups) != 1 \
            or state["config"]["scheduler"].get("_target_") != cfg.scheduler.get("_target_"):
        return False
    epoch = int(state["epoch"])
    used = epoch + (1 if state.get("partial") else 0)  # epochs whose learning rate has been used
    if used == 0:
        return False  # nothing to decide: a checkpoint before the first step holds no schedule worth keeping
    try:
        old, _, _ = _replay(make_optimizer, functools.partial(make_new.func, **stored), used - 1)
        new, optimizer, scheduler = _replay(make_optimizer, make_new, epoch)
    except (TypeError, ValueError, ZeroDivisionError):
        return False
    if old != new[:used]:
        return False
    state["scheduler"] = scheduler.state_dict()
    for key in ("lr", "initial_lr"):
        if key in optimizer.param_groups[0]:
            groups[0][key] = optimizer.param_groups[0][key]
    return True
