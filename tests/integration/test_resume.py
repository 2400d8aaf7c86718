"""Runs that survive a cluster: preemption and requeue in place, kills during checkpoint
writes and a full disk through the real train.py in subprocesses; a second writer, changed
settings, a diverging loss and repeatability through the Python API (``sat.train``)."""

from __future__ import annotations

import copy
import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, read_metrics, user_error
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import sat
from sat.run.checkpoint import load_checkpoint, repair, save_checkpoint

# A run whose epochs are long enough (many small steps) to be stopped in the middle.
LONG = ["dataset=synthetic", "dataset.num_train=6000", "dataset.num_test=64", "model=cnn", "model.width=4",
        "augment=crop_flip", "trainer.epochs=4", "trainer.batch_size=16", "trainer.num_threads=1", "device=cpu",
        "method=sat", "method.start_epoch=1", "noise=flip", "noise.rate=0.3"]


def rows(run: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock timings."""
    return read_metrics(run, timings=False)


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_checkpoint(a), load_checkpoint(b)
    return all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"]) and \
        torch.equal(x["method"]["targets"], y["method"]["targets"])


def start(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def wait_for_epoch(run: Path, epoch: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run / "metrics.jsonl").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) >= epoch:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    raise AssertionError(f"epoch {epoch} not logged in time")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("full") / "run"
    sat.train(LONG, output_dir=run)  # in this process: the interrupted runs below are the entry point's
    return run


@pytest.mark.e2e  # starts a process
def test_sigterm_mid_epoch_then_the_same_command_equals_an_uninterrupted_run(uninterrupted, tmp_path):
    run = tmp_path / "run"
    args = [*LONG, f"hydra.run.dir={run}"]
    proc = start(args, tmp_path)
    wait_for_epoch(run, 1, proc)
    time.sleep(0.4)  # well inside epoch 2
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "stopping after this step" in out and "steps of epoch 2" in out  # stopped mid-epoch, checkpoint written
    assert json.loads((run / "summary.json").read_text())["status"] == "preempted"
    sat.train(args)  # the requeued job: the same settings (in this process; the stop above is train.py's)
    assert "continuing from" in (run / "train.log").read_text()
    assert rows(run) == rows(uninterrupted)  # one line per epoch, the same values
    assert [r["epoch"] for r in rows(run)] == [1, 2, 3, 4]
    assert same_weights(run / "checkpoints/last.pt", uninterrupted / "checkpoints/last.pt")
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert [e.step for e in acc.Scalars("test/acc")] == [1, 2, 3, 4]  # no duplicate epochs in TensorBoard
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


@pytest.mark.e2e  # starts a process
def test_sigkill_at_random_moments_never_breaks_the_run(uninterrupted, tmp_path):
    """Killed without warning (also in the middle of checkpoint writes), the run folder
    always holds a loadable checkpoint, and continuing gives the uninterrupted result."""
    run = tmp_path / "run"
    args = [*LONG, "trainer.checkpoint_every=1", f"hydra.run.dir={run}"]
    for delay in (0.9, 0.35):
        proc = start(args, tmp_path)
        wait_for_epoch(run, 1 if delay > 0.5 else 2, proc)
        time.sleep(delay)
        proc.kill()
        proc.communicate()
        assert load_checkpoint(run / "checkpoints/last.pt")["epoch"] >= 1
    sat.train(args)
    assert rows(run) == rows(uninterrupted)
    assert same_weights(run / "checkpoints/last.pt", uninterrupted / "checkpoints/last.pt")
    for epoch in range(1, 5):
        assert load_checkpoint(run / f"checkpoints/epoch_{epoch}.pt")["epoch"] == epoch
    assert not list((run / "checkpoints").glob(".*.tmp")) and not list((run / "checkpoints/.pending").iterdir())


def test_interrupted_publication_is_repaired(tmp_path, monkeypatch):
    """Killed after last.pt was replaced but before best.pt / epoch_N.pt: repair()
    publishes the rest of that epoch; files of an epoch last.pt never reached are dropped."""
    folder = tmp_path / "checkpoints"
    state = {"epoch": 7, "model": {"w": torch.ones(2)}, "config": {}, "noise_sha256": "0" * 64, "optimizer": {},
             "method": {}}
    save_checkpoint(state, folder, ["last", "best", "epoch_7"])
    real_replace, calls = os.replace, []

    def killed_after_first(src, dst):
        if Path(dst).parent == folder:  # a publishing rename (not a write into .pending)
            calls.append(dst)
            if len(calls) > 1:
                raise KeyboardInterrupt  # the process dies here
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({**state, "epoch": 8}, folder, ["last", "best", "epoch_8"])
    monkeypatch.setattr(os, "replace", real_replace)
    assert load_checkpoint(folder / "last.pt")["epoch"] == 8 and load_checkpoint(folder / "best.pt")["epoch"] == 7
    assert not (folder / "epoch_8.pt").exists()
    (folder / ".pending" / "9.last.pt").write_bytes(b"never committed")
    notes = repair(folder, 8)
    assert load_checkpoint(folder / "best.pt")["epoch"] == 8 and load_checkpoint(folder / "epoch_8.pt")["epoch"] == 8
    assert "discarded unfinished 9.last.pt" in notes and not list((folder / ".pending").iterdir())


@pytest.mark.e2e  # starts a process
def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(uninterrupted, tmp_path):
    run = tmp_path / "run"
    args = [*LONG, f"hydra.run.dir={run}"]
    proc = start(args, tmp_path)
    wait_for_epoch(run, 2, proc)
    proc.kill()
    proc.communicate()
    before = load_checkpoint(run / "checkpoints/last.pt")["epoch"]
    size = (run / "checkpoints/last.pt").stat().st_size

    def small_disk():  # files may not grow past half a checkpoint: the next one cannot be written
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    full = start(args, tmp_path, preexec_fn=small_disk)
    out = full.communicate(timeout=120)[0]
    assert full.returncode == 2, out
    errors = [x for x in out.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "could not write" in errors[0] and "the previous checkpoint is intact" in errors[0]
    assert "Traceback" not in out
    assert load_checkpoint(run / "checkpoints/last.pt")["epoch"] == before  # still loads, still the old epoch
    sat.train(args)  # space again: continues to the uninterrupted result
    assert rows(run) == rows(uninterrupted)


def test_a_second_writer_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running training process holds it (flock: per open file)
        assert "is in use by another training process" in user_error(sat.train, TINY, run)
    assert not (run / "checkpoints").exists() and not (run / "summary.json").exists()


def test_changed_settings_are_refused_and_the_run_keeps_its_record(tmp_path):
    run = tmp_path / "run"
    sat.train(TINY, output_dir=run)
    config = (run / ".hydra/config.yaml").read_text()
    summary = (run / "summary.json").read_text()
    line = user_error(sat.train, [*TINY, "optimizer.lr=0.05", "trainer.batch_size=32"], run)
    assert "optimizer" in line and "trainer.batch_size (64 -> 32)" in line
    assert (run / ".hydra/config.yaml").read_text() == config  # the API's (as Hydra's) rewrite of it is undone
    assert (run / "summary.json").read_text() == summary  # not marked failed: the run itself is fine
    assert "model" in user_error(sat.train, [*TINY, "model.width=16", f"resume={run}/checkpoints/last.pt"],
                                 tmp_path / "b")


def test_a_checkpoint_of_an_older_version_is_continued(compose_cfg):
    """A checkpoint written before a class was moved (its config names the old path, an alias
    of the same class) and before a setting existed (absent from its config; now at the
    schema's default) holds the same settings; a real change is still refused."""
    from sat.config.build import USER_CONFIG
    from sat.config.schema import TrainConfig
    from sat.tasks.context import plain
    from sat.tasks.train.resume import changed_settings

    now = plain(compose_cfg("train", [*TINY, "noise=uniform", "noise.rate=0.4", "paths.output_dir=/tmp/x"]))
    roles = USER_CONFIG.roles(now, TrainConfig)
    older = copy.deepcopy(now)
    older["noise"]["_target_"] = "sat.data.noise.UniformLabelNoise"  # the class's name before sat 0.4
    del older["loader"]["kind"]
    assert now["noise"]["_target_"] == "sat.data.noise.label.UniformLabelNoise" and now["loader"]["kind"] == "auto"
    assert changed_settings(now, older, roles) == []
    older["noise"]["_target_"] = "sat.data.noise.label.FlipLabelNoise"
    older["loader"]["kind"] = "stream"
    assert changed_settings(now, older, roles) == [
        "loader.kind (stream -> auto)",
        "noise._target_ (sat.data.noise.label.FlipLabelNoise -> sat.data.noise.label.UniformLabelNoise)"]
    del older["loader"]["kind"]
    now["loader"]["kind"] = "device"  # not the default: an older run's loader is not known to be this one
    assert changed_settings(now, older, roles)[0] == "loader.kind (<unset> -> device)"


def test_a_schedule_change_is_accepted_until_it_acts(tmp_path):
    """gamma changed after epoch 2 of 3 under a step schedule that first decays after
    epoch 2: nothing run so far felt it, so the continuation takes it and ends as a run
    started with it; a milestone moved into the past is refused."""
    args = [*TINY, "trainer.epochs=3", "scheduler=step", "trainer.checkpoint_every=1"]
    old, new = ["scheduler.milestones=[2]", "scheduler.gamma=0.1"], ["scheduler.milestones=[2]", "scheduler.gamma=0.5"]
    sat.train([*args, *old], output_dir=tmp_path / "old")
    sat.train([*args, *new], output_dir=tmp_path / "new")
    epoch_2 = tmp_path / "old/checkpoints/epoch_2.pt"
    sat.train([*args, *new, f"resume={epoch_2}"], output_dir=tmp_path / "continued")
    assert rows(tmp_path / "continued") == rows(tmp_path / "new")
    assert [r["lr"] for r in rows(tmp_path / "new")] != [r["lr"] for r in rows(tmp_path / "old")]
    assert same_weights(tmp_path / "continued/checkpoints/last.pt", tmp_path / "new/checkpoints/last.pt")
    line = user_error(sat.train, [*args, "scheduler.milestones=[1]", f"resume={epoch_2}"],
                      tmp_path / "refused")
    assert "other settings: scheduler" in line and "before it acts" in line


def test_a_finished_run_rerun_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    sat.train(TINY, output_dir=run)
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert sat.train(TINY, output_dir=run) == summary
    assert f"{100 * summary['final']['test/acc']:.2f}%" in capsys.readouterr().out  # its results table again
    assert "already finished" in (run / "train.log").read_text()
    assert json.loads((run / "summary.json").read_text()) == summary
    assert [r["epoch"] for r in rows(run)] == [1, 2]


def test_continuing_in_another_folder_brings_its_history(tmp_path):
    """resume=PATH into a new folder: the new folder holds the whole run (metrics from
    epoch 1, best.pt from the epoch that was best) and ends as the original would."""
    args = [*TINY, "trainer.epochs=4", "method=sat", "noise=uniform", "noise.rate=0.4", "trainer.checkpoint_every=1"]
    sat.train(args, output_dir=tmp_path / "full")
    sat.train([*args, f"resume={tmp_path / 'full/checkpoints/epoch_2.pt'}"], output_dir=tmp_path / "forked")
    assert rows(tmp_path / "forked") == rows(tmp_path / "full")
    full_best = load_checkpoint(tmp_path / "full/checkpoints/best.pt")
    assert load_checkpoint(tmp_path / "forked/checkpoints/best.pt")["epoch"] == full_best["epoch"]


def test_a_diverging_loss_stops_with_its_epoch_and_step(tmp_path):
    line = user_error(sat.train, ["dataset=synthetic", "model=mlp", "augment=none", "method=ce", "device=cpu",
                                  "trainer.epochs=3", "optimizer.lr=1e30"], tmp_path / "r")
    assert line.startswith("the training loss became non-finite at epoch 1, step 2")
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite" in summary["error"]


def test_two_fresh_runs_with_one_seed_are_identical(tmp_path):
    args = [*TINY, "method=sat", "noise=flip", "noise.rate=0.3", "augment=crop_flip", "trainer.deterministic=true"]
    for name in ("a", "b"):
        sat.train(args, output_dir=tmp_path / name)
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    assert same_weights(tmp_path / "a/checkpoints/last.pt", tmp_path / "b/checkpoints/last.pt")
    assert json.loads((tmp_path / "a/summary.json").read_text())["deterministic"] is True


def test_preemption_hands_the_signal_to_the_launcher_s_handler():
    """Under submitit, its SIGUSR2 handler requeues the job: after our checkpoint it must
    still be called, and the exit status says which signal stopped the run."""
    from sat.run.preemption import Preempted, Preemption

    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        with Preemption() as preemption:
            assert not preemption.requested()
            os.kill(os.getpid(), signal.SIGUSR2)
            assert preemption.requested() and calls == []  # recorded only: the step finishes first
            with pytest.raises(Preempted) as stop:
                preemption.exit("checkpoint written")
        assert calls == [signal.SIGUSR2] and stop.value.code == 128 + signal.SIGUSR2
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_slurm_preset_requeues_preempted_and_timed_out_jobs(compose_cfg):
    launcher = compose_cfg("train", ["hydra/launcher=slurm", "paths.output_dir=/tmp/x"],
                           return_hydra_config=True).hydra.launcher
    assert launcher.max_num_timeout >= 1 and launcher.signal_delay_s >= 60
    assert launcher.additional_parameters.requeue is True
