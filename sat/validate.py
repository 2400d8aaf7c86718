"""Checks of config values: each bad value becomes a one-line :class:`UserError` that
names the setting as the user typed it (``trainer.batch_size=0``) and what is accepted.

Constructors and tasks call these before any data is loaded, so a typo costs no
minutes of loading and leaves no half-made run behind.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
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


def number(
    name: str, value: Any, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
    hi_open: bool = False, integer: bool = False,
) -> Any:
    """``value`` as an int (``integer``) or float inside the given bounds, else a UserError.

    Booleans, strings and NaN are refused: ``epochs=true`` or ``lr=abc`` are typos, not numbers.
    """
    accepted = _accepted(lo, hi, lo_open, hi_open, integer)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise UserError(f"{name}={value!r} is not {'an integer' if integer else 'a number'}; accepted: {accepted}")
    if integer:
        if not float(value).is_integer():
            raise UserError(f"{name}={value!r} is not an integer; accepted: {accepted}")
        value = int(value)
    else:
        value = float(value)
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        raise UserError(f"{name}={value!r} is out of range; accepted: {accepted}")
    return value


def positive_int(name: str, value: Any) -> int:
    return number(name, value, lo=1, integer=True)


def choice(name: str, value: Any, options: Iterable[Any]) -> Any:
    options = list(options)
    if value not in options:
        raise UserError(f"{name}={value!r} is not supported; accepted: {', '.join(map(str, options))}")
    return value


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name}={value!r} is not a boolean; accepted: true, false")
    return value
