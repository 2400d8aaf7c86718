"""Numbers a run computes with (issue 27, item 7): non-finite values and magnitudes beyond
float32 are refused wherever numbers are checked (``alpha=inf`` or ``1e308`` drew
Beta(inf, inf) in float32, ~1e-38, and silently turned mixup off); integers within int64
(seeds up to 2**63 - 1) stay accepted."""

from __future__ import annotations

import math

import pytest

from sat.config import validate
from sat.config.value_checks import check_node
from sat.errors import UserError


@pytest.mark.parametrize("value", [math.inf, -math.inf, 1e308, 3.5e38, -1e39])
def test_a_number_beyond_float32_is_out_of_range(value):
    with pytest.raises(UserError, match=r"^alpha=.* is out of range; accepted: a number (>= 0 )?within float32"):
        validate.number("alpha", value, lo=0.0 if value > 0 else None)


@pytest.mark.parametrize("value", [1e308, 2 ** 63, -(2 ** 63) - 1])
def test_an_integer_beyond_int64_is_out_of_range(value):
    with pytest.raises(UserError, match=r"is out of range; accepted: an integer within int64"):
        validate.number("trainer.epochs", value, integer=True)


def test_large_legitimate_values_are_kept():
    assert validate.number("seed", 2 ** 63 - 1, lo=0, integer=True) == 2 ** 63 - 1
    assert validate.number("lr", 3e38) == 3e38 and validate.number("lr", 1e-300) == 1e-300
    assert validate.positive_int("dataset.num_train", 10 ** 12) == 10 ** 12


@pytest.mark.parametrize("target", ["sat.methods.mixup.Mixup", "sat.methods.dividemix.DivideMix",
                                    "sat.methods.elr_plus.ELRPlus"])
@pytest.mark.parametrize("value", [math.inf, 1e308])
def test_mixing_methods_refuse_an_alpha_that_turns_mixing_off(target, value):
    """Both checks a method node passes: its annotations (check_node) and its constructor."""
    module, _, name = target.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    with pytest.raises(UserError, match=r"method\.alpha=(inf|1e\+308) is not a number"):
        check_node({"_target_": target, "alpha": value}, "method")
    with pytest.raises(UserError, match=r"^alpha=(inf|1e\+308) is out of range"):
        cls(alpha=value)
