"""A search space from Hydra's override syntax: ``hydra.sweeper.params`` and the command
line's overrides, as Optuna distributions (searched) and plain overrides (passed to
every trial as they are)."""

from __future__ import annotations

import math
from typing import Any

ACCEPTED = "interval(a,b), int(interval(a,b)), tag(log, interval(a,b)), range(a,b[,step]) or choice(x,y,...)"


def parse(params: dict[str, str], arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``(distributions, fixed)``: the searched keys and the overrides every trial gets.
    A command-line override replaces ``params``' entry for its key (searched or fixed)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    declared = parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
    given = parser.parse_overrides(list(arguments))
    typed = {o.get_key_element() for o in given}
    space: dict[str, Any] = {}
    fixed: list[str] = []
    for override in [o for o in declared if o.get_key_element() not in typed] + given:
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(key, override)
        else:
            fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
    return space, fixed


def distribution(key: str, override: Any) -> Any:
    """``interval(a,b)`` -> float (``int(interval(a,b))``: int; ``tag(log, ...)``: log scale),
    ``range(a,b,s)`` -> a stepped int or float, ``choice(...)`` or ``a,b`` -> categorical."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from sat.errors import UserError

    value = override.value()
    given = (override.input_line or "").partition("=")[2]  # as typed: tag(log, interval(0, 1))
    log = "log" in getattr(value, "tags", set())
    try:
        if isinstance(value, ChoiceSweep):
            return CategoricalDistribution(list(override.sweep_string_iterator()))
        if isinstance(value, IntervalSweep):
            if isinstance(value.start, int) and isinstance(value.end, int):
                return IntDistribution(value.start, value.end, log=log)
            return FloatDistribution(float(value.start), float(value.end), log=log)
        if isinstance(value, RangeSweep) and value.start is not None and value.stop is not None:
            step = value.step or 1
            last = value.start + step * (math.ceil((value.stop - value.start) / step) - 1)
            if all(isinstance(v, int) for v in (value.start, value.stop, step)):
                return IntDistribution(value.start, last, step=step, log=log)
            return FloatDistribution(float(value.start), float(last), step=float(step), log=log)
    except ValueError as e:  # low > high, log with a bound <= 0, ...
        raise UserError(key=key, value=given, problem=f"is not a search space ({e})",
                        accepted=ACCEPTED) from None
    raise UserError(key=key, value=given, problem="is not a search space",
                    accepted=ACCEPTED)


def overrides(params: dict[str, Any]) -> list[str]:
    """A trial's values as overrides (``key=value``)."""
    return [f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}" for key, value in params.items()]
