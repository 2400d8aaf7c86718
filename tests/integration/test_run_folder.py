"""A run folder is untrusted input (issue 19, items 1, 2, 7): a copied folder with links
where sat writes is refused and never written through; a refused command leaves the
folder's record as it was; a full disk does not hide the run's own error."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_entry
from hostile import one_line_error

from sat.cli.hooks import RunLogFile
from sat.errors import UserError
from sat.run.files import check_no_links, open_append, write_atomic
from sat.run.folder import RunFolder
from sat.run.lock import hold_lock, release_lock
from sat.run.loggers import CSVLogger, RunLogger


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text("precious\n")
    return path


def _unchanged(victim: Path) -> None:
    assert victim.read_text() == "precious\n"


# --- the writer ----------------------------------------------------------------------------


def test_write_atomic_replaces_a_file_and_refuses_a_link(tmp_path, victim):
    target = tmp_path / "run" / "summary.json"
    target.parent.mkdir()
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]  # no temporary left behind
    target.unlink()
    target.symlink_to(victim)
    with pytest.raises(UserError, match="is a link"):
        write_atomic(target, "payload")
    _unchanged(victim)


def test_write_atomic_refuses_a_linked_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / ".hydra").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UserError, match=r"\.hydra -> .*elsewhere is a link"):
        write_atomic(run / ".hydra" / "evil.yaml", "payload")
    assert list(elsewhere.iterdir()) == []


def test_open_append_never_follows_a_link(tmp_path, victim):
    log = tmp_path / "train.log"
    log.symlink_to(victim)
    with pytest.raises(UserError, match="is a link"):
        open_append(log)
    _unchanged(victim)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "soft_labels.npy"
    target.write_text("old")

    def broken(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["soft_labels.npy"]


@pytest.mark.parametrize("link", [".hydra/config.yaml", "train.log", "label_errors.csv", "checkpoints/last.pt",
                                  "metrics.jsonl", ".lock"])
def test_a_folder_with_a_link_where_sat_writes_is_refused(tmp_path, victim, link):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / link).symlink_to(victim)
    with pytest.raises(UserError, match=f"{link.split('/')[-1]} -> .*victim.txt is a link"):
        check_no_links(run)
    with pytest.raises(UserError, match="is a link"):
        RunFolder(run).lock()
    _unchanged(victim)


# --- every file the framework writes in a run folder -------------------------------------


def test_restoring_the_hydra_record_never_writes_through_links(tmp_path, victim):
    """The attack: a copied folder's .hydra/config.yaml links to ~/.bashrc and its
    checkpoint's hydra_files holds a payload."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").symlink_to(victim)
    with pytest.raises(UserError, match="is a link"):
        RunFolder(run).restore_hydra_files({"config.yaml": "echo pwned\n"})
    _unchanged(victim)
    # .hydra itself a link to a folder: no *.yaml appears there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run2 = tmp_path / "run2"
    run2.mkdir()
    (run2 / ".hydra").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UserError, match="is a link"):
        RunFolder(run2).restore_hydra_files({"evil.yaml": "x: 1\n"})
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("name", ["label_errors.csv", "soft_labels.npy", "given_labels.npy", "sample_ids.npy",
                                  "soft_labels.pt", "label_errors.html"])
def test_refined_labels_never_write_through_links(tmp_path, victim, name):
    from sat.tasks.train.outputs import RunPage, write_soft_labels

    class Soft:
        def soft_labels(self):
            return torch.tensor([[0.9, 0.1], [0.2, 0.8]])

    (tmp_path / name).symlink_to(victim)
    page = RunPage(tmp_path / "checkpoints/last.pt", 1, "toy", {"kind": "none", "rate": 0.0})  # and the review page
    with pytest.raises(UserError, match="is a link"):
        write_soft_labels(tmp_path, Soft(), torch.tensor([0, 0]), None, torch.tensor([5, 6]), page=page)
    _unchanged(victim)


def test_written_refined_labels_are_plain_files(tmp_path):
    from sat.tasks.train.outputs import write_soft_labels

    class Soft:
        def soft_labels(self):
            return torch.tensor([[0.9, 0.1], [0.2, 0.8]])

    write_soft_labels(tmp_path, Soft(), torch.tensor([0, 0]), None, torch.tensor([5, 6]))
    import numpy as np

    assert np.load(tmp_path / "sample_ids.npy").tolist() == [5, 6]
    rows = (tmp_path / "label_errors.csv").read_text().splitlines()
    assert rows[1].split(",")[:3] == ["6", "0", "1"] and len(rows) == 2


def test_metrics_logs_never_write_through_links(tmp_path, victim):
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(UserError, match="is a link"):
        RunLogger(tmp_path, 3)
    (tmp_path / "metrics.jsonl").unlink()
    (tmp_path / "metrics.csv").symlink_to(victim)
    with pytest.raises(UserError, match="is a link"):
        CSVLogger(tmp_path)
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(UserError, match="is a link"):
        RunFolder(tmp_path).cut_metrics(0)  # a continued run cuts its log back
    _unchanged(victim)


# --- the lock, before anything is written ------------------------------------------------


def _hold_in_other_process(folder: Path) -> subprocess.Popen:
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_log_handler_locks_and_the_run_folder_shares_the_lock(tmp_path):
    handler = RunLogFile(str(tmp_path / "train.log"))
    try:
        run = RunFolder(tmp_path)
        run.lock()  # the same process: shares the handler's lock
        run.unlock()
        probe = os.open(tmp_path / ".lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):  # still held by the handler
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        handler.close()
    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the handler
    os.close(probe)


@pytest.mark.e2e  # starts a process
def test_the_log_handler_refuses_a_busy_folder_before_writing(tmp_path, capsys):
    holder = _hold_in_other_process(tmp_path)
    try:
        with pytest.raises(UserError, match="is in use"):  # the entry point prints it as its error: line
            RunLogFile(str(tmp_path / "train.log"))
        assert not (tmp_path / "train.log").exists()
        with pytest.raises(UserError, match="in use"):
            hold_lock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    hold_lock(tmp_path)
    release_lock(tmp_path)


@pytest.mark.e2e  # starts a process
def test_a_second_train_on_a_busy_folder_leaves_its_record(tmp_path):
    """Item 2: the refused command used to rewrite .hydra/config.yaml and overrides.yaml."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    record = {name: f"# the first run's {name}\n" for name in ("config.yaml", "overrides.yaml", "hydra.yaml")}
    for name, text in record.items():
        (run / ".hydra" / name).write_text(text)
    holder = _hold_in_other_process(run)
    try:
        proc = run_entry("train.py", "experiment=quickstart", "seed=7", f"hydra.run.dir={run}", cwd=tmp_path,
                         check=False)
    finally:
        holder.kill()
        holder.wait()
    one_line_error(proc, "is in use")
    assert {p.name: p.read_text() for p in (run / ".hydra").iterdir()} == record
    assert not (run / "train.log").exists()


@pytest.mark.e2e  # starts a process
def test_train_refuses_a_linked_record_and_writes_nothing_through_it(tmp_path, victim):
    """Item 1, end to end: Hydra writes .hydra/*.yaml itself; the handler refuses first."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").symlink_to(victim)
    proc = run_entry("train.py", "experiment=quickstart", f"hydra.run.dir={run}", cwd=tmp_path, check=False)
    one_line_error(proc, "config.yaml", "is a link")
    _unchanged(victim)
    assert sorted(p.name for p in run.iterdir()) == [".hydra"]


# --- a full disk does not hide the run's error --------------------------------------------


def test_status_failed_on_a_full_disk_keeps_the_original_error(tmp_path, monkeypatch, caplog):
    run = RunFolder(tmp_path)
    run.set_status("running", epochs_done=0)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("sat.run.folder.write_atomic", full)
    run.set_status("failed", error="UserError: could not write last.pt")  # no second OSError raised
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"  # recorded in place
    monkeypatch.setattr("os.open", full)
    with caplog.at_level(logging.ERROR, logger="sat"):
        run.set_status("failed", error="again")
    assert "could not record status failed" in caplog.text



def test_a_sweep_folder_with_a_linked_job_folder_is_refused_before_hydra_writes(tmp_path, capsys):
    from omegaconf import OmegaConf

    from sat.cli.hooks import SweepFolderCheck

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "method-ce+seed-0").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SystemExit) as e:
        SweepFolderCheck().on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert e.value.code == 2 and "method-ce+seed-0 -> " in capsys.readouterr().err
    (sweep / "method-ce+seed-0").unlink()
    SweepFolderCheck().on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))


def test_evaluate_in_a_training_runs_folder_is_refused_before_its_record_is_replaced(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="holds a training run; evaluate.py writes"):
        RunLogFile(str(run / "evaluate.log"))
    assert not (run / "evaluate.log").exists() and not (run / ".lock").exists()
    RunLogFile(str(run / "train.log")).close()  # the training run itself continues there
