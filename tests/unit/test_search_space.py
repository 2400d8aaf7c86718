"""The study sweeper's parts (hydra_plugins/sat_optuna_sweeper): a search space from
Hydra's override syntax, and when a running trial is taken over by another sweeper."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.sat_optuna_sweeper import space
from hydra_plugins.sat_optuna_sweeper.sweeper import STALE_S, abandoned
from sat.errors import UserError


def test_search_space_syntax():
    params = {"a": "interval(0.5, 0.99)", "b": "int(interval(1, 80))", "c": "tag(log, interval(0.005, 0.2))",
              "d": "choice(sgd, adam)", "e": "range(0, 10, 3)", "f": "0.5"}
    found, fixed = space.parse(params, ["b=3", "d=sgd,adamw", "+g=x"])
    assert found == {"a": FloatDistribution(0.5, 0.99), "c": FloatDistribution(0.005, 0.2, log=True),
                     "e": IntDistribution(0, 9, step=3), "d": CategoricalDistribution(["sgd", "adamw"])}
    assert fixed == ["f=0.5", "b=3", "+g=x"]  # a command-line value replaces the declared search
    assert space.overrides({"a": 0.1 + 0.2, "e": 3, "d": "sgd"}) == ["a=0.30000000000000004", "e=3", "d=sgd"]


def test_a_space_optuna_cannot_draw_from_is_refused_naming_its_key():
    with pytest.raises(UserError) as refused:
        space.parse({"c": "tag(log, interval(0, 1))"}, [])
    assert refused.value.key == "c"
    assert str(refused.value).startswith("c='tag(log, interval(0, 1))' is not a search space (")
    assert str(refused.value).endswith(f"; accepted: {space.ACCEPTED}")


def test_a_running_trial_is_taken_over_only_when_its_sweeper_is_gone():
    here, now = socket.gethostname(), time.time()
    no_such_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # above any process number: no process
    assert abandoned({"owner": f"{here}:{no_such_pid}", "alive_at": now}, now)  # exited, here
    assert abandoned({"owner": f"{here}:{os.getpid()}", "alive_at": now}, now)  # this process: an earlier one's number
    assert not abandoned({"owner": f"{here}:{os.getppid()}", "alive_at": now}, now)  # alive, here
    assert not abandoned({"owner": "elsewhere:1", "alive_at": now - STALE_S + 5}, now)  # heard of lately
    assert abandoned({"owner": "elsewhere:1", "alive_at": now - STALE_S - 5}, now)  # not heard of for too long
