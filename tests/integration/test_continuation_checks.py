"""A checkpoint continued with ``resume=`` is untrusted input (issue 27, items 8, 14, 16):
its epoch must be one of the run's and the one its scheduler counted, before anything
else (a crafted 10**9 passed for a finished run, and its schedule replay ran for days);
a loose checkpoint file brings no other folder's history; a continuation tells a run
killed without a word from one still training."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import TINY, user_error
from hostile import craft, within

import sat


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 2-epoch run (its last.pt: epoch 2, the scheduler stepped twice)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    sat.train([*TINY, "trainer.num_threads=1"], output_dir=run)
    return run


def _epoch(epoch: int, steps: int | None = None):
    def edit(state):
        state["epoch"] = epoch
        state["scheduler"]["last_epoch"] = epoch if steps is None else steps
    return edit


def test_a_checkpoint_beyond_the_runs_epochs_is_refused_first(trained, tmp_path):
    crafted = craft(trained / "checkpoints" / "last.pt", tmp_path / "loose" / "evil.pt", _epoch(10 ** 9))
    message = user_error(sat.train, [*TINY, f"resume={crafted}"], tmp_path / "new")
    assert message.startswith(f"resume: {crafted} holds epoch 1000000000, beyond this run's trainer.epochs=2")
    assert not (tmp_path / "new").exists()  # nothing left: not taken for a finished run


def test_an_epoch_its_scheduler_did_not_count_is_refused(trained, tmp_path):
    crafted = craft(trained / "checkpoints" / "last.pt", tmp_path / "loose" / "evil.pt", _epoch(1, steps=2))
    message = user_error(sat.train, [*TINY, f"resume={crafted}"], tmp_path / "new")
    assert "holds epoch 1 but its scheduler has stepped 2 times" in message


def test_a_schedule_change_never_replays_a_crafted_epoch(trained, tmp_path):
    """Item 16: the replay that decides whether a schedule change acted runs as many steps as
    the checkpoint's epoch; refused before it runs, in well under a second of replay."""
    crafted = craft(trained / "checkpoints" / "last.pt", tmp_path / "loose" / "evil.pt", _epoch(10 ** 9))
    with within(30):  # the replay of 10**9 steps would take days
        message = user_error(sat.train, [*TINY, "scheduler.eta_min=0.001", f"resume={crafted}"], tmp_path / "new")
    assert "holds epoch 1000000000" in message


def test_a_loose_checkpoint_brings_no_other_folders_history(trained, tmp_path):
    """A checkpoint outside a run folder's checkpoints/: its grandparent is no run to copy metrics from."""
    loose = tmp_path / "downloads" / "x" / "model.pt"
    loose.parent.mkdir(parents=True)
    shutil.copyfile(trained / "checkpoints" / "last.pt", loose)
    (tmp_path / "downloads" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "planted": True}) + "\n")
    sat.train([*TINY, "trainer.num_threads=1", f"resume={loose}"], output_dir=tmp_path / "new")
    assert "planted" not in (tmp_path / "new" / "metrics.jsonl").read_text()


# --- item 14: a run killed without a word, told from one still training ------------------------------


def test_readers_tell_a_killed_run_from_a_running_one(trained, tmp_path, caplog):
    """Its summary says running either way; only a live process holds the folder's lock."""
    from sat.run.folder import RunFolder
    from sat.tasks.restore import note_run_state

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running"}))  # as an OOM kill leaves it
    assert RunFolder(run).status() == "killed"
    with caplog.at_level("WARNING", logger="sat"):
        note_run_state(run / "checkpoints" / "last.pt", 2)  # what evaluate.py and attack.py say
    assert f"of a run that was killed (no process holds its lock); python train.py resume={run} continues it" \
        in caplog.text
    lock = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)  # a training process, alive
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        assert RunFolder(run).status() == "running"
        caplog.clear()
        with caplog.at_level("WARNING", logger="sat"):
            note_run_state(run / "checkpoints" / "last.pt", 2)
        assert "of a run still training" in caplog.text
    finally:
        os.close(lock)
    sat.train([*TINY, "trainer.num_threads=1", f"resume={run}"], output_dir=run)  # the continuation says so
    assert "was killed while training (its summary says running; no process held its lock)" in \
        (run / "train.log").read_text()
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
