"""Checks of values: each bad value becomes a one-line :class:`UserError` that names it
and what is accepted.

Constructors name their own argument (``alpha=1.5``), never a config path: the task
layer that built the object from a config node puts the node's path before it
(:func:`config_node`: ``method.natural.alpha=1.5``). Tasks name the setting as the user
typed it (``trainer.batch_size=0``). Both check before any data is loaded, so a typo
costs no minutes of loading and leaves no half-made run behind.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
from collections.abc import Iterable, Iterator
from typing import Any

from sat.errors import UserError


def _accepted(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, integer: bool) -> str:
    kind = "an integer" if integer else "a number"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return f"{kind} {' and '.join(parts)}".strip()


# The largest magnitudes a value may have: a float the float32 computations it feeds can hold
# (``alpha=1e308`` would draw Beta(inf, inf) and silently turn mixing off), an integer
# torch's int64 can.
FLOAT32_MAX = 3.4028234663852886e38
INT64 = (-(2 ** 63), 2 ** 63 - 1)


def representable(value: Any) -> bool:
    """A finite number within float32's range (a Python int: within int64's)."""
    if isinstance(value, numbers.Integral):
        return INT64[0] <= int(value) <= INT64[1]
    return math.isfinite(value) and abs(value) <= FLOAT32_MAX


def number(
    name: str, value: Any, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
    hi_open: bool = False, integer: bool = False,
) -> Any:
    """``value`` as an int (``integer``) or float inside the given bounds, else a UserError.

    Booleans, strings and NaN are refused: ``epochs=true`` or ``lr=abc`` are typos, not
    numbers; so are infinities and magnitudes beyond float32 (an integer: beyond int64).
    """
    accepted = _accepted(lo, hi, lo_open, hi_open, integer)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise UserError(key=name, value=value, problem=f"is not {'an integer' if integer else 'a number'}",
                        accepted=accepted)
    given = value
    if integer:
        if not float(value).is_integer():
            raise UserError(key=name, value=value, problem="is not an integer", accepted=accepted)
        value = int(value)
    else:
        value = float(value)
    if not representable(value):
        limit = "int64 (|n| < 2**63)" if integer else "float32 (finite, |x| <= 3.4e38)"
        raise UserError(key=name, value=given, problem="is out of range", accepted=f"{accepted} within {limit}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        raise UserError(key=name, value=value, problem="is out of range", accepted=accepted)
    return value


def positive_int(name: str, value: Any) -> int:
    """The one positive-integer check: ``name=0`` is out of range; accepted: an integer >= 1."""
    return number(name, value, lo=1, integer=True)


def choice(name: str, value: Any, options: Iterable[Any]) -> Any:
    options = list(options)
    if value not in options:
        raise UserError(key=name, value=value, problem="is not supported", accepted=", ".join(map(str, options)))
    return value


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(key=name, value=value, problem="is not a boolean", accepted="true, false")
    return value


# --- naming arguments by the config key they came from --------------------------------------


def argument_names(obj: Any) -> set[str] | None:
    """The keyword arguments of a function or class, following ``**kwargs`` up the base
    classes' ``__init__``; None where that ends open (anything may be accepted)."""
    functions = [obj] if not inspect.isclass(obj) else \
        [c.__dict__["__init__"] for c in obj.__mro__ if "__init__" in c.__dict__ and c is not object]
    names: set[str] = set()
    for function in functions:
        try:
            params = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


@contextlib.contextmanager
def argument(name: str) -> Iterator[None]:
    """Refusals raised inside by a part given to its owner as argument ``name`` (TRADES'
    ``natural``) name its arguments through it: ``natural.start_epoch=70``."""
    try:
        yield
    except UserError as e:
        raise e.within(name) from None


@contextlib.contextmanager
def config_node(path: str) -> Iterator[None]:
    """Refusals raised inside by an object the task built from the config node at
    ``path`` name its arguments from the config's root: ``method.natural.start_epoch=70``
    (``""``: keys already named from the root, such as ``trainer.batch_size``). A name from
    the root is final, and a free-form message is left as it is."""
    try:
        yield
    except UserError as e:
        raise e.from_node(path) from None
