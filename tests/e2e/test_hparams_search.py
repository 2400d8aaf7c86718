"""Hyper-parameter search (``python train.py -m hparams_search=...``): the Optuna study
sweeper (hydra_plugins/sat_optuna_sweeper) through the real train.py on digits, 2 epochs
a trial: a study in its SQLite database, its folder and trials, the same command again,
the study report. (Stopped, parallel and refused searches: test_hparams_search_recovery.py;
the search spaces and the study folder's name: tests/integration/test_hparams_search_config.py;
the space syntax and taking over a trial: tests/unit/test_search_space.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import run_entry
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
    # report/: the study's report, written when the search ends (hydra.callbacks.sweep_report)
    assert sorted(p.name for p in study_dir.iterdir()) == ["multirun.yaml", "optuna.db", "report", "trial-0",
                                                           "trial-1", "trial-2"]
    assert (study_dir / "report" / "study.md").read_text().startswith(
        "# Study multirun/quickstart/search-quickstart/method.start_epoch-1+trainer.epochs-2+seed-0\n")


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
