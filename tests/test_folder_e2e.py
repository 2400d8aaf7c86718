"""An image-folder dataset (PNG and JPEG files with a label list, generated here) through
the real train.py, evaluate.py and resume, streamed from disk and decoded onto the device."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import read_metrics, run_entry
from image_folder_files import write_list_dataset


def folder_args(root: Path, loader: str) -> list[str]:
    return ["dataset=image_folder", f"dataset.root={root}", "dataset.num_classes=3", "dataset.image_size=8",
            "dataset.resize=10", "dataset.val_size=10", f"dataset.loader={loader}", "dataset.num_workers=0",
            "model=cnn", "model.width=4", "augment=none", "trainer.epochs=3", "trainer.batch_size=16", "device=cpu",
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
    run_entry("train.py", *args, f"resume={tmp_path / 'full/checkpoints/epoch_1.pt'}",
              f"hydra.run.dir={tmp_path / 'resumed'}", cwd=tmp_path)
    assert rows(tmp_path / "resumed") == rows(tmp_path / "full")  # resume continues exactly
    summary = json.loads((tmp_path / "full/summary.json").read_text())
    assert summary["noise"]["num_train"] == 50 and summary["noise"]["realised_error"] == pytest.approx(0.3, abs=0.05)
    proc = run_entry("evaluate.py", f"checkpoint={tmp_path / 'full/checkpoints/last.pt'}", f"dataset_root={images}",
                     f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["test/acc"] == pytest.approx(summary["final"]["test/acc"])
    if loader == "stream":  # exported suspects name their file and its line in the list
        listed = dict(line.split() for line in (images / "train.txt").read_text().splitlines())
        names = (images / "train.txt").read_text().splitlines()
        with open(tmp_path / "full/label_errors.csv") as f:
            for r in csv.DictReader(f):
                assert names[int(r["sample_id"])].split()[0] == r["file"] and r["file"] in listed
