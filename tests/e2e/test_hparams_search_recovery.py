"""Hyper-parameter search when things go wrong, through the real train.py on digits: a
study SIGKILLed and continued by the same command, trials side by side under joblib,
refused trials recorded as failed. (In a module of its own: pytest-xdist runs it beside
test_hparams_search.py. A search without a validation split: tests/e2e/test_cli_errors.py.)"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import ROOT, run_entry
from studies import SMALL, assert_trial_is_its_run, trials


def test_a_killed_study_continues_with_the_same_command(tmp_path):
    """SIGKILL while trial 3 trains (3 complete); the same command continues trial 3 from
    its checkpoint in its folder, then runs trial 4: exactly 5 complete trials."""
    args = [sys.executable, str(ROOT / "train.py"), "-m", *SMALL, "trainer.epochs=4", "hydra.sweeper.n_trials=5"]
    study_dir = tmp_path / "multirun/quickstart/search-quickstart/method.start_epoch-1+trainer.epochs-4+seed-0"
    trial3 = study_dir / "trial-3"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while first.poll() is None and time.monotonic() < deadline:
            if (trial3 / "checkpoints" / "last.pt").is_file():
                first.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        first.wait()
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    with sqlite3.connect(f"file:{study_dir / 'optuna.db'}?mode=ro", uri=True) as db:
        states = db.execute("select number, state from trials order by number").fetchall()
    assert states == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE"), (3, "RUNNING")]

    again = run_entry("train.py", "-m", *SMALL, "trainer.epochs=4", "hydra.sweeper.n_trials=5", cwd=tmp_path)
    log = again.stdout + again.stderr
    assert "continuing trial(s) [3], left running by a stopped search" in log
    assert f"continuing from {trial3 / 'checkpoints' / 'last.pt'} after epoch" in log
    found = trials(study_dir)
    assert [(t.number, t.state.name) for t in found] == [(n, "COMPLETE") for n in range(5)]
    # the continued search draws new settings: its seeded sampler does not replay trials 0-3's
    assert len({tuple(sorted(t.params.items())) for t in found}) == 5, [t.params for t in found]
    for trial in found:
        assert_trial_is_its_run(trial, study_dir)
        assert [json.loads(line)["epoch"] for line in (study_dir / f"trial-{trial.number}" / "metrics.jsonl")
                .read_text().splitlines()] == [1, 2, 3, 4]


def test_two_joblib_workers_share_one_study(tmp_path):
    """Trials two at a time (joblib): none lost, none run twice, each in its own folder."""
    run_entry("train.py", "-m", *SMALL, "trainer.epochs=2", "hydra.sweeper.n_trials=4", "hydra/launcher=local",
              "hydra.launcher.n_jobs=2", cwd=tmp_path)
    (study_dir,) = (tmp_path / "multirun" / "quickstart" / "search-quickstart").iterdir()
    found = trials(study_dir)
    assert [(t.number, t.state.name) for t in found] == [(n, "COMPLETE") for n in range(4)]
    for trial in found:
        assert_trial_is_its_run(trial, study_dir)
    assert len({t.user_attrs["owner"] for t in found}) == 1  # one sweeper asked and told them all
    starts = sorted(t.datetime_start for t in found)
    assert starts[1] < min(t.datetime_complete for t in found)  # two trials were under way at once


def test_a_refused_trial_is_recorded_as_failed_and_the_search_goes_on(tmp_path):
    """Every trial refused (SAT's E_s 5 >= 2 epochs): each a failed trial with its reason,
    the search going on until hydra.sweeper.max_failures, then one error line."""
    proc = run_entry("train.py", "-m", *SMALL, "trainer.epochs=2", "method.start_epoch=5", "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.max_failures=3", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: hydra.sweeper.max_failures=3 is reached: the study holds 3 failed trials (the last, "
                           "trial 2: error: ")
    assert last.endswith("; accepted: the trials' settings fixed, or a larger hydra.sweeper.max_failures")
    (study_dir,) = (tmp_path / "multirun" / "quickstart" / "search-quickstart").iterdir()
    found = trials(study_dir)
    assert [(t.number, t.state.name) for t in found] == [(n, "FAIL") for n in range(3)]
    for trial in found:
        reason = trial.user_attrs["reason"]  # the run's own error line
        assert reason.startswith("error: ") and "start_epoch=5 >= trainer.epochs=2, so SAT would never start" in reason
    assert sorted(p.name for p in study_dir.iterdir()) == ["multirun.yaml", "optuna.db", "refused.log"]
    from sat.report.cli import main

    assert main([str(study_dir), "--out", str(tmp_path / "report")]) == 0  # a study without one complete trial
    md = (tmp_path / "report" / "study.md").read_text()
    assert "3 trials (3 fail). The objective, to maximize: `final/val/acc`" in md
    assert f"- trial 2: {found[2].user_attrs['reason']}" in md
    assert md.rstrip().endswith("- no figures: the study holds no complete trial")
