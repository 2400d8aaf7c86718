"""Every bad input of issue 15: one message naming the bad value, and nothing already
written lost (no checkpoint made, a fresh run folder marked failed, an existing run folder
and an existing output file untouched). The values are refused in this process through the
Python API (``sat.train``, ``sat.evaluate``, ``sat.attack`` raise the UserError the entry
points print); a few of them, the unusable output folders and Hydra's own refusals of a
config it cannot compose (unknown group option, unknown key) go through the real entry
points in subprocesses: exit status 2, exactly one ``error:`` line, no traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import TINY, run_entry, user_error
from hostile import composition_error, one_line_error

import sat


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished tiny run with epoch_1.pt and epoch_2.pt (2 epochs)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert sat.train([*TINY, "trainer.checkpoint_every=1"], output_dir=run)["status"] == "finished"
    return run


# --- train.py: a bad value in a fresh run folder -----------------------------------------------

# (override, what the error line must name)
TRAIN_VALUES = [
    ("method.alpha=abc", "method.alpha='abc'"),
    ("trainer.batch_size=0", "trainer.batch_size=0"),
    ("trainer.batch_size=-1", "trainer.batch_size=-1"),
    ("trainer.epochs=0", "trainer.epochs=0"),
    ("trainer.epochs=-1", "trainer.epochs=-1"),
    ("method.start_epoch=1.5", "method.start_epoch=1.5"),
    ("optimizer.lr=-1", "optimizer.lr=-1"),
    ("trainer.eval_batch_size=0", "trainer.eval_batch_size=0"),  # once refused only after a whole epoch
    ("trainer.num_threads=-1", "trainer.num_threads=-1"),
]


@pytest.mark.parametrize("override,named", TRAIN_VALUES, ids=[o for o, _ in TRAIN_VALUES])
def test_a_bad_training_value_is_one_line_before_anything_runs(tmp_path, override, named):
    run = tmp_path / "run"
    assert named in user_error(sat.train, [*TINY, override], run)
    _refused_before_anything_ran(run, named)


def test_an_argument_the_tracker_does_not_take_is_one_line_before_training(tmp_path):
    run = tmp_path / "run"
    line = user_error(sat.train, [*TINY, "+logger.tensorboard.flush_secs=abc"], run)
    assert "logger.tensorboard.flush_secs is not a key of logger.tensorboard; accepted: " in line
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()


def test_a_tracker_setting_outside_its_tracker_s_node_says_where_it_goes(tmp_path):
    """Each tracker's node sits under its name (logger=[tensorboard,csv] composes both)."""
    run = tmp_path / "run"
    line = user_error(sat.train, [*TINY, "+logger.flush_secs=10"], run)
    assert line.startswith("logger.flush_secs is not a tracker node (no _target_)")
    assert "logger.tensorboard.flush_secs=" in line
    assert not run.exists()




def _refused_before_anything_ran(run: Path, named: str) -> None:
    """Through the API, as through the command line: refused before data, noise or training,
    and the folder the refused run was given is gone (it held nothing of a run)."""
    assert not run.exists()


# --- train.py: a bad value rerun in a finished run's folder ------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a run folder except the logs Hydra appends to and the lock file."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".log" and p.name != ".lock"}


@pytest.fixture(scope="module")
def refused_rerun(trained, tmp_path_factory):
    """The finished run's folder (a copy), the same command again with trainer.batch_size=0."""
    cwd = tmp_path_factory.mktemp("rerun")
    run = cwd / "run"
    shutil.copytree(trained, run)
    before = _snapshot(run)
    proc = run_entry("train.py", *TINY, "trainer.checkpoint_every=1", "trainer.batch_size=0", f"hydra.run.dir={run}",
                     cwd=cwd, check=False)  # through train.py: Hydra itself rewrites .hydra/ before the task runs
    return run, before, proc


def test_a_bad_value_rerun_in_a_finished_run_keeps_its_results(refused_rerun):
    run, before, proc = refused_rerun
    one_line_error(proc, "trainer.batch_size=0", out=run)
    after = _snapshot(run)
    kept = {k for k in before if not k.startswith(".hydra")}
    assert {k: after.get(k) for k in kept} == {k: before[k] for k in kept}  # checkpoints, metrics, summary, noise ...
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"  # not marked failed


def test_a_bad_value_rerun_in_a_finished_run_keeps_its_hydra_record(refused_rerun):
    """.hydra/ records the command the run's results came from: a command refused before it
    ran must not replace it (as a refused continuation with changed settings does not)."""
    run, before, proc = refused_rerun
    assert proc.returncode == 2
    after = _snapshot(run)
    changed = sorted(k for k in before if k.startswith(".hydra") and after.get(k) != before[k])
    assert not changed, f"{changed} now record the refused command: " + \
        (run / ".hydra/overrides.yaml").read_text().replace("\n", " ")


# --- evaluate.py and attack.py ------------------------------------------------------------------------

# (entry point, arguments, what the error line must contain, what it must not)
ENTRY_VALUES = [
    ("evaluate.py", [], ("checkpoint is required",), ()),
    ("evaluate.py", ["checkpoint={ckpt}", "trainer.eval_batch_size=0"], ("trainer.eval_batch_size=0",), ()),
    ("evaluate.py", ["checkpoint={run}"], ("is a folder",), ("does not exist",)),
    ("attack.py", ["checkpoint={run}/checkpoints"], ("is a folder",), ("does not exist",)),
    ("evaluate.py", ["checkpoint={ckpt}", "trainer.precision=fp16"], ("trainer.precision='fp16'",), ()),
    ("attack.py", ["checkpoint={ckpt}", "num_samples=0"], ("num_samples=0",), ()),
    ("attack.py", ["checkpoint={ckpt}", "num_samples=-1"], ("num_samples=-1",), ()),
    ("attack.py", ["checkpoint={ckpt}", "attack.steps=abc"], ("attack.steps='abc'",), ()),
    ("attack.py", ["checkpoints={run}", "epochs=2-1"], ("epochs='2-1'", "reversed"), ("matches none", "matches no ")),
]
# the same cases through the entry points in subprocesses: exit status and printing
THROUGH_ENTRY_POINTS = {2, 7}
TASKS = {"evaluate.py": sat.evaluate, "attack.py": sat.attack}


def _earlier_result(out: Path) -> Path:
    out.mkdir()
    (out / "evaluation.json").write_text('{"previous": "result"}')  # an earlier result in the same folder
    return out


def _earlier_result_kept(out: Path) -> None:
    assert (out / "evaluation.json").read_text() == '{"previous": "result"}'
    assert not (out / "robustness.csv").exists()


def _entry_case_id(entry: str, args: list[str]) -> str:
    return f"{entry}:{' '.join(args).replace('{', '').replace('}', '') or 'no-args'}"


@pytest.mark.parametrize("entry,args,contains,absent", ENTRY_VALUES,
                         ids=[_entry_case_id(e, a) for e, a, _, _ in ENTRY_VALUES])
def test_a_bad_evaluate_or_attack_value_is_one_line(trained, tmp_path, entry, args, contains, absent):
    out = _earlier_result(tmp_path / "out")
    args = [a.format(run=trained, ckpt=trained / "checkpoints/last.pt") for a in args]
    line = user_error(TASKS[entry], [*args, "device=cpu"], out)
    assert all(text in line for text in contains) and not any(text in line for text in absent), line
    _earlier_result_kept(out)


@pytest.mark.parametrize("entry,args,contains,absent", [ENTRY_VALUES[i] for i in sorted(THROUGH_ENTRY_POINTS)],
                         ids=[_entry_case_id(*ENTRY_VALUES[i][:2]) for i in sorted(THROUGH_ENTRY_POINTS)])
def test_a_bad_evaluate_or_attack_value_through_the_entry_point_exits_2(trained, tmp_path, entry, args, contains,
                                                                        absent):
    out = _earlier_result(tmp_path / "out")
    args = [a.format(run=trained, ckpt=trained / "checkpoints/last.pt") for a in args]
    proc = run_entry(entry, *args, "device=cpu", f"hydra.run.dir={out}", cwd=tmp_path, check=False)
    one_line_error(proc, *contains, absent=absent, out=out)
    _earlier_result_kept(out)


# --- output folders that cannot be used ----------------------------------------------------------------

OUTPUTS = [("train.py", "under_a_file"), ("train.py", "an_existing_file"), ("train.py", "read_only"),
           ("evaluate.py", "an_existing_file")]


@pytest.mark.parametrize("entry,where", OUTPUTS, ids=[f"{e}:{w}" for e, w in OUTPUTS])
def test_an_unusable_output_folder_is_one_line(trained, tmp_path, entry, where):
    results = tmp_path / "results.txt"
    results.write_text("an earlier result\n")
    out = {"under_a_file": results / "run", "an_existing_file": results,
           "read_only": Path("/proc") / f"sat-readonly-{os.getpid()}" / "run"}[where]
    args = [*TINY] if entry == "train.py" else [f"checkpoint={trained / 'checkpoints/last.pt'}", "device=cpu"]
    proc = run_entry(entry, *args, f"hydra.run.dir={out}", cwd=tmp_path, check=False)
    one_line_error(proc, str(out.parent) if where == "read_only" else str(results))
    assert results.read_text() == "an earlier result\n"


# --- configs Hydra cannot compose -----------------------------------------------------------------------

COMPOSE = [("train.py", ["method=nosuch"]), ("evaluate.py", ["checkpoint={ckpt}", "nosuch=1"]),
           ("attack.py", ["checkpoint={ckpt}", "attack=nosuch"])]


@pytest.mark.parametrize("entry,args", COMPOSE, ids=[f"{e}:{a[-1]}" for e, a in COMPOSE])
def test_an_unknown_option_or_key_exits_2_without_traceback(trained, tmp_path, entry, args):
    out = tmp_path / "out"
    args = [a.format(ckpt=trained / "checkpoints/last.pt") for a in args]
    base = [*TINY] if entry == "train.py" else ["device=cpu"]
    proc = run_entry(entry, *base, *args, f"hydra.run.dir={out}", cwd=tmp_path, check=False)
    composition_error(proc)
    one_line_error(proc, "nosuch")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # not Hydra's 7 to 26 lines
    assert not out.exists()  # refused before a run folder is made
