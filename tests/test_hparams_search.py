"""Hyper-parameter search (``python train.py -m hparams_search=...``): the Optuna study
sweeper (hydra_plugins/sat_optuna_sweeper) through the real train.py on digits, 2-4
epochs a trial: a study in its SQLite database, continued after a SIGKILL, trials side by
side under joblib, refused trials recorded as failed, and the study report."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, run_entry
from omegaconf import OmegaConf

# The quickstart at 2 epochs with SAT from epoch 1: about a second a trial.
SMALL = ["experiment=quickstart", "hparams_search=quickstart", "method.start_epoch=1", "logger=none"]


def trials(study_dir: Path) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{study_dir / 'optuna.db'}"
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage).trials


def run_overrides(run_dir: Path) -> dict[str, str]:
    lines = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    return dict(line.split("=", 1) for line in lines)


def assert_trial_is_its_run(trial: optuna.trial.FrozenTrial, study_dir: Path) -> None:
    """The trial's folder is trial-<number> in the study folder; it trained the trial's
    values and returned its best validation accuracy (never a test value)."""
    run_dir = Path(trial.user_attrs["run_dir"])
    assert run_dir == study_dir / f"trial-{trial.number}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert trial.value == pytest.approx(summary["at_best_val"]["val/acc"])
    given = run_overrides(run_dir)
    for key, value in trial.params.items():
        assert float(given[key]) == pytest.approx(value), key


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
    for trial in found:
        assert_trial_is_its_run(trial, study_dir)
        assert [json.loads(line)["epoch"] for line in (study_dir / f"trial-{trial.number}" / "metrics.jsonl")
                .read_text().splitlines()] == [1, 2, 3, 4]


def test_two_joblib_workers_share_one_study(tmp_path):
    """Trials two at a time (joblib): none lost, none run twice, each in its own folder."""
    run_entry("train.py", "-m", *SMALL, "trainer.epochs=2", "hydra.sweeper.n_trials=4", "hydra/launcher=local", "hydra.launcher.n_jobs=2",
              cwd=tmp_path)
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
    assert last.startswith("error: hydra.sweeper.max_failures=3: the study holds 3 failed trials; the last, trial 2: ")
    (study_dir,) = (tmp_path / "multirun" / "quickstart" / "search-quickstart").iterdir()
    found = trials(study_dir)
    assert [(t.number, t.state.name) for t in found] == [(n, "FAIL") for n in range(3)]
    for trial in found:
        assert trial.user_attrs["reason"] == ("error: method.start_epoch=5 >= trainer.epochs=2, so SAT would never "
                                              "start; accepted: method.start_epoch < 2 (or more trainer.epochs)")
    assert sorted(p.name for p in study_dir.iterdir()) == ["multirun.yaml", "optuna.db", "refused.log"]


def test_a_search_without_a_validation_split_is_refused_before_any_trial(tmp_path):
    proc = run_entry("train.py", "-m", *SMALL, "trainer.epochs=2", "dataset.val_size=0", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: a hyper-parameter search maximises objective=at_best_val/val/acc, but dataset.val_size=0 leaves no "
        "validation split; accepted: dataset.val_size=N with N > 0 (noisy labels held out of training: the search "
        "never reads clean labels)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", sorted(p.stem for p in (ROOT / "conf" / "hparams_search").glob("*.yaml")))
def test_every_search_space_composes_and_names_keys_of_its_method(compose_cfg, option):
    from hydra_plugins.sat_optuna_sweeper import space

    cfg = compose_cfg("train", ["experiment=quickstart", f"hparams_search={option}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.sat_optuna_sweeper.sweeper.StudySweeper"
    assert sweeper.direction == "maximize" and cfg.objective == "at_best_val/val/acc"
    params = OmegaConf.to_container(sweeper.params)
    distributions, fixed = space.parse(params, [])
    assert set(distributions) == set(params) and fixed == []
    for key in params:
        assert OmegaConf.select(cfg, key) is not None, f"hparams_search={option} searches {key}, which is not a key"
    assert option == "optuna" or params  # only the base file leaves the space to the command line


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
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert abandoned({"owner": f"{here}:{gone.stdout.strip()}", "alive_at": now}, now)  # exited, here
    assert not abandoned({"owner": f"{here}:{os.getppid()}", "alive_at": now}, now)  # alive, here
    assert not abandoned({"owner": "elsewhere:1", "alive_at": now - STALE_S + 5}, now)  # heard of lately
    assert abandoned({"owner": "elsewhere:1", "alive_at": now - STALE_S - 5}, now)  # not heard of for too long
