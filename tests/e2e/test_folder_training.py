"""An image-folder dataset (PNG and JPEG files with a label list, generated here) through
the real train.py, evaluate.py and resume, streamed from disk and decoded onto the device."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, read_metrics, run_entry, user_error
from image_folder_files import write_class_folders, write_list_dataset

import sat


def folder_args(root: Path, loader: str) -> list[str]:
    return ["dataset=image_folder", f"dataset.root={root}", "dataset.num_classes=3", "dataset.image_size=8",
            "dataset.resize=10", "dataset.val_size=10", f"loader.kind={loader}", "loader.num_workers=0",
            "model=cnn", "model.width=4", "augment=none", "trainer.epochs=3", "trainer.batch_size=16", "device=cpu",
            "trainer.num_threads=1",  # one thread in every process, so runs here and in train.py compare exactly
            "method=sat", "method.start_epoch=1", "noise=flip", "noise.rate=0.3", "trainer.checkpoint_every=1"]


def rows(run: Path) -> list[dict]:
    return read_metrics(run, timings=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_list_dataset(tmp_path_factory.mktemp("folder"), num_train=60, num_test=20)


@pytest.mark.parametrize("loader", ["stream", "device"])
def test_folder_dataset_trains_resumes_and_evaluates(images, tmp_path, loader):
    args = folder_args(images, loader)
    run_entry("train.py", *args, f"hydra.run.dir={tmp_path / 'full'}", cwd=tmp_path)
    sat.train([*args, f"resume={tmp_path / 'full/checkpoints/epoch_1.pt'}"], output_dir=tmp_path / "resumed")
    assert rows(tmp_path / "resumed") == rows(tmp_path / "full")  # resume continues exactly
    summary = json.loads((tmp_path / "full/summary.json").read_text())
    assert summary["noise"]["num_train"] == 50 and summary["noise"]["realised_error"] == pytest.approx(0.3, abs=0.05)
    result = sat.evaluate([f"checkpoint={tmp_path / 'full/checkpoints/last.pt'}", f"dataset_root={images}"],
                          output_dir=tmp_path / "eval")
    assert result["test/acc"] == pytest.approx(summary["final"]["test/acc"])
    # a refusal of the restored dataset's root names the key that sets it here, not the stored dataset.root
    (tmp_path / "empty").mkdir()
    line = user_error(sat.evaluate, [f"checkpoint={tmp_path / 'full/checkpoints/last.pt'}",
                                     f"dataset_root={tmp_path / 'empty'}", "device=cpu"], tmp_path / "eval_empty")
    assert line.startswith(f"dataset_root={tmp_path / 'empty'} holds neither") and "dataset.root" not in line, line
    if loader == "stream":  # exported suspects name their file and its line in the list
        listed = dict(line.split() for line in (images / "train.txt").read_text().splitlines())
        names = (images / "train.txt").read_text().splitlines()
        with open(tmp_path / "full/label_errors.csv") as f:
            for r in csv.DictReader(f):
                assert names[int(r["sample_id"])].split()[0] == r["file"] and r["file"] in listed


def test_a_signal_to_the_process_group_stops_a_streamed_run_within_a_step(images, tmp_path):
    """Slurm (and ``kill -- -PID``) signal every process of the job: the reader workers
    leave it to the main process, which checkpoints after its current step; the
    summary's wall time is the run's."""
    run = tmp_path / "run"
    args = [*folder_args(images, "stream"), "loader.num_workers=2", "trainer.epochs=200", "trainer.batch_size=4",
            f"hydra.run.dir={run}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    started = json.loads((run / "summary.json").read_text())
    time.sleep(0.6)  # (so that the run's wall time must have grown by more than 0.5 s when it stops)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)  # the main process and its reader workers
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert time.monotonic() - sent < 30, out  # within a step (plus shutting the workers down), not minutes
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "preempted" and summary["wall_time_s"] > started["wall_time_s"] + 0.5


def test_the_readme_s_cpu_command_trains_a_class_folder_tree(tmp_path):
    """``python train.py experiment=image_folder_cpu dataset.root=DIR``: the command the
    default folder run's refusal on a CPU names (tests/e2e/test_cli_errors.py), on
    torchvision's ImageFolder layout (48 px images, viewed at the preset's 32 px)."""
    root = write_class_folders(tmp_path / "folder", per_class=6, test_per_class=2)
    run_entry("train.py", "experiment=image_folder_cpu", f"dataset.root={root}", "trainer.epochs=2",
              "method.start_epoch=1", "trainer.num_threads=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 2 and "test/acc" in summary["final"]
    assert summary["noise"]["num_train"] == 18  # 3 classes x 6 images (val_size 0)
