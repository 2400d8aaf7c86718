"""Hyper-parameter search (``python train.py -m hparams_search=...``): the Optuna study
sweeper (hydra_plugins/sat_optuna_sweeper) through the real train.py on digits, 2 epochs
a trial: a study in its SQLite database, its folder and trials, the same command again,
the study report; every search space composes; the space syntax; taking over a trial.
(Stopped, parallel and refused searches: tests/test_hparams_search_recovery.py.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, run_entry
from studies import SMALL, assert_trial_is_its_run, trials

@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One 3-trial study, in its default folder below the working folder (shared by the tests below)."""
    cwd = tmp_path_factory.mktemp("search")
    proc = run_entry("train.py", "-m", *SMALL, "trainer.epochs=2", "hydra.sweeper.n_trials=3", cwd=cwd)
    (study_dir,) = (cwd / "multirun" / "quickstart" / "search-quickstart").iterdir()
    return study_dir, proc


def test_a_study_keeps_its_trials_in_sqlite_each_an_ordinary_run_folder(study):
    study_dir, _ = study
    # named by the command's fixed settings (hparams_search is a level above; experiment, logger change nothing)
    assert study_dir.name == "method.start_epoch-1+trainer.epochs-2+seed-0"
    found = trials(study_dir)
    assert [(t.number, t.state.name) for t in found] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    for trial in found:
        assert set(trial.params) == {"method.alpha"}  # start_epoch fixed on the command line: not searched
        assert 0.7 <= trial.params["method.alpha"] <= 0.99
        assert_trial_is_its_run(trial, study_dir)
    assert sorted(p.name for p in study_dir.iterdir()) == ["multirun.yaml", "optuna.db", "trial-0", "trial-1",
                                                           "trial-2"]


def test_the_same_command_finds_its_finished_study_and_runs_nothing(study):
    study_dir, _ = study
    before = [(t.number, t.datetime_complete) for t in trials(study_dir)]
    again = run_entry("train.py", "-m", *SMALL, "trainer.epochs=2", "hydra.sweeper.n_trials=3", cwd=study_dir.parents[3])
    log = again.stdout + again.stderr
    assert "3 complete trials; best: trial" in log and "Launching" not in log
    assert [(t.number, t.datetime_complete) for t in trials(study_dir)] == before


def test_the_report_of_a_study_folder(study, tmp_path):
    from sat.report.cli import main

    study_dir, _ = study
    out = tmp_path / "report"
    assert main([str(study_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "optimization_history.pdf", "optimization_history.png", "param_importances.pdf", "param_importances.png",
        "study.md", "trials.csv"]
    found = trials(study_dir)
    best = max(found, key=lambda t: (t.value, -t.number))
    md = (out / "study.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| 1 |")]
    assert table and table[0].startswith(f"| 1 | {best.number} | {best.value:.4g} |")
    assert table[0].endswith(f"| trial-{best.number} |")
    (command,) = [line for line in md.splitlines() if line.startswith("python train.py -m")]
    assert f"method.alpha={best.params['method.alpha']!r}" in command
    assert "method=sat" in command and command.endswith("seed=0,1,2,3,4") and "hparams_search" not in command
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial,state,objective,method.alpha,final_test_acc_pct") and len(rows) == 4
    assert main([str(study_dir), "--out", str(tmp_path / "none"), "--top", "0"]) == 2  # one error line, nothing written
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("option", sorted(p.stem for p in (ROOT / "conf" / "hparams_search").glob("*.yaml")))
def test_every_search_space_composes_and_names_keys_of_its_method(compose_cfg, option):
    from hydra_plugins.sat_optuna_sweeper import space

    cfg = compose_cfg("train", ["experiment=quickstart", f"hparams_search={option}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.sat_optuna_sweeper.sweeper.StudySweeper"
    assert sweeper.direction == "maximize" and cfg.objective == "final/val/acc"
    params = OmegaConf.to_container(sweeper.params)
    distributions, fixed = space.parse(params, [])
    assert set(distributions) == set(params) and fixed == []
    for key in params:
        assert OmegaConf.select(cfg, key) is not None, f"hparams_search={option} searches {key}, which is not a key"
    assert option == "optuna" or params  # only the base file leaves the space to the command line


def test_a_study_folder_is_named_by_the_command_s_fixed_settings_and_its_objective():
    from sat.tasks.search import study_subdir

    command = ["experiment=quickstart", "hparams_search=sat", "noise.rate=0.6", "method.alpha=interval(0.5,0.9)",
               "logger=none", "objective=at_best_val/val/acc", "trainer.epochs=50", "trainer.epochs=60"]
    assert study_subdir(command, ["experiment", "logger", "objective", "seed"], 1) == \
        "noise.rate-0.6+objective-at_best_val_val_acc+trainer.epochs-60+seed-1"


def test_search_space_syntax():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydra_plugins.sat_optuna_sweeper import space
    from sat.errors import UserError

    params = {"a": "interval(0.5, 0.99)", "b": "int(interval(1, 80))", "c": "tag(log, interval(0.005, 0.2))",
              "d": "choice(sgd, adam)", "e": "range(0, 10, 3)", "f": "0.5"}
    found, fixed = space.parse(params, ["b=3", "d=sgd,adamw", "+g=x"])
    assert found == {"a": FloatDistribution(0.5, 0.99), "c": FloatDistribution(0.005, 0.2, log=True),
                     "e": IntDistribution(0, 9, step=3), "d": CategoricalDistribution(["sgd", "adamw"])}
    assert fixed == ["f=0.5", "b=3", "+g=x"]  # a command-line value replaces the declared search
    assert space.overrides({"a": 0.1 + 0.2, "e": 3, "d": "sgd"}) == ["a=0.30000000000000004", "e=3", "d=sgd"]
    with pytest.raises(UserError) as refused:
        space.parse({"c": "tag(log, interval(0, 1))"}, [])
    assert str(refused.value).startswith("the search space c=tag(log, interval(0, 1)): ")


def test_a_running_trial_is_taken_over_only_when_its_sweeper_is_gone():
    import os
    import socket

    from hydra_plugins.sat_optuna_sweeper.sweeper import STALE_S, abandoned

    here, now = socket.gethostname(), time.time()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    assert abandoned({"owner": f"{here}:{gone.stdout.strip()}", "alive_at": now}, now)  # exited, here
    assert not abandoned({"owner": f"{here}:{os.getppid()}", "alive_at": now}, now)  # alive, here
    assert not abandoned({"owner": "elsewhere:1", "alive_at": now - STALE_S + 5}, now)  # heard of lately
    assert abandoned({"owner": "elsewhere:1", "alive_at": now - STALE_S - 5}, now)  # not heard of for too long
