"""A method key on a sweep of several methods (``train.py -m method=ce,sat method.alpha=0.95``):
each job keeps the keys its method takes, the others run without them (and say so), and a
key no method of the sweep takes is refused. The sweeper's side, on the real composition."""

from __future__ import annotations

import pytest

from sat.cli.method_keys import fit_method_keys
from sat.cli.sweeps import sweep_subdir
from sat.errors import UserError

IGNORED = "+hydra.job.env_set.SAT_IGNORED_KEYS="


@pytest.fixture
def compose(compose_cfg):
    return lambda job: compose_cfg("train", [*job, "paths.output_dir=/tmp/x"], return_hydra_config=True)


def test_each_job_keeps_the_method_keys_its_method_takes(compose):
    jobs = [["experiment=quickstart", f"method={m}", "method.alpha=0.95", "method.natural.alpha=0.8", f"seed={seed}"]
            for m in ("ce", "sat", "trades_sat") for seed in (0, 1)]
    fitted = fit_method_keys(jobs, compose)
    assert fitted[0] == ["experiment=quickstart", "method=ce", "seed=0",
                         f"{IGNORED}'method.alpha method.natural.alpha'"]
    assert fitted[2] == ["experiment=quickstart", "method=sat", "method.alpha=0.95", "seed=0",
                         f"{IGNORED}'method.natural.alpha'"]
    assert fitted[4] == ["experiment=quickstart", "method=trades_sat", "method.natural.alpha=0.8", "seed=0",
                         f"{IGNORED}'method.alpha'"]  # a nested key: TRADES' natural loss takes it
    # the folder names carry only what each job runs with
    assert [sweep_subdir(job[1:], 0) for job in fitted[::2]] == [
        "method-ce+seed-0", "method.alpha-0.95+method-sat+seed-0", "method.natural.alpha-0.8+method-trades_sat+seed-0"]
    for job in fitted:  # and each composes: Hydra takes the override of the ignored keys
        compose(job)


def test_jobs_that_become_the_same_run_once(compose):
    jobs = [["experiment=quickstart", f"method={m}", f"method.alpha={a}"] for m in ("ce", "sat") for a in (0.9, 0.95)]
    fitted = fit_method_keys(jobs, compose)
    assert [job[:3] for job in fitted] == [["experiment=quickstart", "method=ce", f"{IGNORED}'method.alpha'"],
                                           ["experiment=quickstart", "method=sat", "method.alpha=0.9"],
                                           ["experiment=quickstart", "method=sat", "method.alpha=0.95"]]


def test_a_key_no_method_of_the_sweep_takes_is_refused(compose):
    jobs = [["experiment=quickstart", f"method={m}", "method.alfa=0.95"] for m in ("ce", "sat")]
    with pytest.raises(UserError, match=r"^method.alfa is not a key of method; did you mean method.alpha\?$"):
        fit_method_keys(jobs, compose)


def test_a_sweep_without_method_keys_is_left_as_it_is(compose):
    jobs = [["method=ce", "noise.rate=0.2"], ["method=sat", "noise.rate=0.2"]]
    assert fit_method_keys(jobs, lambda job: pytest.fail("nothing to compose")) == jobs
