"""Config values checked against what their constructor declares, before anything is
built: ``optimizer.nesterov=maybe``, ``scheduler.milestones=abc`` (which never decays),
``scheduler.gamma=abc`` (which fails at the first milestone, epochs into a run) or
``method.q=abc`` become one line naming the setting and what is accepted.

The types come from the target's own annotations (torch's optimizers and schedulers and
sat's classes annotate their arguments), so no list of settings is kept here; values the
annotations cannot tell apart (``step_size=0``) have :data:`SCHEDULER_BOUNDS`. Where the
schema helper's structured configs cover a node, they check it first; this covers the
``_target_`` nodes whose keys are a constructor's arguments.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from omegaconf import DictConfig, ListConfig, OmegaConf

from sat.config import validate
from sat.errors import UserError

# Values the learning-rate schedulers' annotations allow but that make no schedule
# (StepLR(step_size=0) divides by zero at its first step), by scheduler.
_POSITIVE_INT = {"lo": 1, "integer": True}
_POSITIVE = {"lo": 0, "lo_open": True}
SCHEDULER_BOUNDS: dict[str, dict[str, dict[str, Any]]] = {
    "StepLR": {"step_size": _POSITIVE_INT, "gamma": _POSITIVE},
    "MultiStepLR": {"gamma": _POSITIVE},
    "ExponentialLR": {"gamma": _POSITIVE},
    "CosineAnnealingLR": {"T_max": _POSITIVE_INT, "eta_min": {"lo": 0}},
    "CosineAnnealingWarmRestarts": {"T_0": _POSITIVE_INT, "eta_min": {"lo": 0}},
    "ConstantLR": {"factor": {"lo": 0, "hi": 1}, "total_iters": {"lo": 0, "integer": True}},
    "ReduceLROnPlateau": {"factor": {"lo": 0, "hi": 1, "lo_open": True, "hi_open": True}},
}

# torch.manual_seed takes 64-bit seeds; numpy's generators 0 .. 2**32 - 1 would be narrower.
SEED_MAX = 2 ** 63 - 1


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer 0 .. 2**63 - 1 (``seed=1e20`` overflows torch's generator)."""
    return validate.number(name, value, lo=0, hi=SEED_MAX, integer=True)


def _hints(target: Any) -> dict[str, Any]:
    """The annotated argument types of a class's ``__init__`` or a function."""
    fn = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a name imported only for type checkers: evaluate the annotations one by one
        pass
    names = {**vars(collections.abc), **vars(typing), **getattr(fn, "__globals__", {})}
    hints = {}
    for name, param in inspect.signature(fn).parameters.items():
        try:
            hints[name] = eval(param.annotation, names) if isinstance(param.annotation, str) else param.annotation
        except Exception:
            continue
    return hints


def _real(value: Any) -> bool:
    """A number a run can compute with: not NaN, infinite or beyond float32 (an int: int64)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value) \
        and validate.representable(value)


def accepts(hint: Any, value: Any) -> bool | None:
    """Whether ``value`` (plain config data) fits annotation ``hint``; None: cannot tell."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        answers = [accepts(a, value) for a in args]
        return True if True in answers else (None if None in answers else False)
    if origin is Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return _real(value)
    if hint is str:
        return isinstance(value, str)
    if getattr(hint, "__name__", None) == "Tensor":  # config values are never tensors (lr: float | Tensor)
        return False
    if origin in (list, tuple, collections.abc.Iterable, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(accepts(a, v) is not False for a, v in zip(args, value))
        return all(accepts(args[0], v) is not False for v in value) if args else True
    return None


def describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        shown = [describe(a) for a in args if describe(a)]
        return " or ".join(dict.fromkeys(shown))
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple, collections.abc.Iterable, collections.abc.Sequence):
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            type(None): "null"}.get(hint, "")


def _target(path: Any) -> Any:
    from hydra.utils import get_object

    try:
        return get_object(str(path))
    except Exception:  # the build reports a target that cannot be imported
        return None


def check_node(node: Any, what: str) -> None:
    """Check every argument of a ``_target_`` node (and of nested ones) against its
    target's annotations; a one-line UserError for the first that does not fit."""
    if isinstance(node, (DictConfig, ListConfig)):
        try:
            node = OmegaConf.to_container(node, resolve=True)
        except Exception:  # an interpolation only the run can resolve: check the literal values
            node = OmegaConf.to_container(node, resolve=False)
    if not isinstance(node, Mapping) or "_target_" not in node:
        return
    target = _target(node["_target_"])
    if target is None:
        return
    hints = _hints(target)
    module, _, name = str(node["_target_"]).rpartition(".")
    bounds = SCHEDULER_BOUNDS.get(name, {}) if module == "torch.optim.lr_scheduler" else {}
    for key, value in node.items():
        key = str(key)
        if (key.startswith("_") and key.endswith("_")) or value == "???" or (isinstance(value, str) and "${" in value):
            continue  # Hydra's keys; missing values and interpolations are reported where they are read
        if isinstance(value, Mapping) and "_target_" in value:
            check_node(value, f"{what}.{key}")
            continue
        hint = hints.get(key)
        if hint is not None and accepts(hint, value) is False:
            raise UserError(f"{what}.{key}={value!r} is not {describe(hint) or 'accepted'}; accepted: "
                            f"{describe(hint) or str(hint)}")
        if key in bounds and _real(value):
            validate.number(f"{what}.{key}", value, **bounds[key])
