"""Bad input to a training or evaluation run is one line naming its key, before any epoch
and with no folder left (issue 27, items 6, 10-13): a batch size that leaves BatchNorm1d
one sample, kNN settings by their real names, STL-10's unlabeled images with a method that
reads labels (and the self-supervised run they are for), a noise file's label beyond the
classes, DDP processes that read other data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, user_error

import sat
from sat.data.noise import NoisePattern
from sat.errors import UserError
from sat.parallel.group import Distributed

SSL_DIGITS = ["experiment=ssl_digits", "trainer.epochs=2", "method.start_epoch=1", "trainer.eval_every=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    sat.train([*TINY, "trainer.num_threads=1"], output_dir=run)
    return run


# --- item 10: a last batch of one sample --------------------------------------------------------


def test_a_batch_of_one_for_batchnorm1d_is_refused_before_epoch_1(tmp_path):
    """ssl_digits trains on 1,100 images: a batch size of 7 leaves a last batch of 1, which
    crashed the projector's BatchNorm1d after the whole epoch had trained."""
    message = user_error(sat.train, [*SSL_DIGITS, "trainer.batch_size=7"], tmp_path / "run")
    assert message == ("trainer.batch_size=7 leaves a batch of one sample of the 1100 training samples, and BatchNorm1d "
                       "(in the method's heads) cannot train on one; accepted: a batch size whose every batch holds at "
                       "least 2 samples, e.g. 6 or 8")
    assert not (tmp_path / "run").exists()


def test_the_same_batch_size_trains_where_nothing_needs_two_samples(tmp_path):
    from sat.tasks.train.preflight import check_smallest_batch

    check_smallest_batch([("the model", torch.nn.Conv2d(1, 1, 1))], 1100, 7, 1)  # no BatchNorm1d: fine
    check_smallest_batch([("the model", torch.nn.BatchNorm1d(4))], 1100, 10, 1)  # last batch 0
    check_smallest_batch([("the model", torch.nn.BatchNorm1d(4))], 1100, 12, 4)  # last batch 8: 2 per process
    with pytest.raises(UserError, match=r"batch of one sample per process .* e\.g\. 12 or 16$"):
        check_smallest_batch([("the model", torch.nn.BatchNorm1d(4))], 1100, 8, 4)  # last batch 4: 1 per process


# --- item 11: kNN settings named as typed ----------------------------------------------------------


@pytest.mark.parametrize("override,expected", [
    ("method.knn_k=0", "method.knn_k=0 is out of range; accepted: an integer >= 1"),
    ("method.knn_temperature=0", "method.knn_temperature=0.0 is out of range; accepted: a number > 0"),
])
def test_knn_settings_are_named_by_their_keys(tmp_path, override, expected):
    assert user_error(sat.train, [*SSL_DIGITS, override], tmp_path / "run").startswith(expected)


# --- item 12: STL-10's unlabeled images ------------------------------------------------------------


def _stl10(root: Path, train: int = 40, test: int = 20, unlabeled: int = 30) -> Path:
    """A small STL-10 binary release (uint8 3x96x96 images, labels 1-10)."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test), ("unlabeled", unlabeled)):
        rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            (np.arange(n) % 10 + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
    return root


STL10 = ["experiment=ssl_stl10_resnet18", "model=cnn", "model.width=4", "trainer.epochs=1", "trainer.batch_size=8",
         "dataset.val_size=4", "device=cpu", "trainer.num_threads=1"]


def test_unlabeled_images_with_a_method_that_reads_labels_are_one_line(tmp_path):
    root = _stl10(tmp_path / "data")
    message = user_error(sat.train, [*STL10, f"dataset.root={root}", "method=ce"], tmp_path / "run")
    assert message.startswith("dataset.unlabeled=true adds stl10 images without labels, which only self-supervised "
                              "methods train on (method=CrossEntropy reads every image's label); accepted: "
                              "dataset.unlabeled=false, or a self-supervised method")


def test_a_self_supervised_run_trains_on_unlabeled_images(tmp_path):
    """They never reached training: the noise refused label -1 (rate 0 draws nothing)."""
    root = _stl10(tmp_path / "data")
    summary = sat.train([*STL10, f"dataset.root={root}", "method=byol", "trainer.eval_every=1"], tmp_path / "run")
    assert summary["status"] == "finished" and summary["noise"]["num_train"] == 40 + 30 - 4
    assert NoisePattern.load(tmp_path / "run" / "noise.pt").labels.min() == -1  # read back (evaluate, resume)
    message = user_error(sat.train, [*STL10, f"dataset.root={root}", "method=byol", "noise.rate=0.2"], tmp_path / "r2")
    assert message == ("noise.rate=0.2 corrupts labels, but dataset.unlabeled=true adds stl10 images that have none; "
                       "accepted: noise.rate=0, or dataset.unlabeled=false")


# --- item 13: a crafted noise file ------------------------------------------------------------------


def test_a_noise_file_label_beyond_the_classes_is_one_line(trained, tmp_path):
    """evaluate.py replays the run's noise.pt (its hash recomputed by whoever crafted it)."""
    stored = torch.load(trained / "noise.pt", weights_only=True)
    pattern = NoisePattern(stored["kind"], stored["rate"], stored["seed"], stored["indices"],
                           stored["labels"].clone(), stored["images"], stored["dataset"])
    pattern.labels[0] = 99
    pattern.save(trained.parent / "crafted" / "noise.pt")
    (trained.parent / "crafted" / "checkpoints").mkdir()
    (trained.parent / "crafted" / "checkpoints" / "last.pt").write_bytes((trained / "checkpoints/last.pt").read_bytes())
    message = user_error(sat.evaluate, [f"checkpoint={trained.parent}/crafted/checkpoints/last.pt", "device=cpu"],
                         tmp_path / "eval")
    assert message.startswith("the run's noise.pt holds label 99, but the dataset has 4 classes; accepted:")
    message = user_error(sat.train, [*TINY, f"noise.from_file={trained.parent}/crafted/noise.pt"], tmp_path / "r")
    assert "holds label 99, but the dataset has 4 classes" in message


# --- item 6: DDP processes that read other data -------------------------------------------------------


class _OtherDataOnRank1(Distributed):
    """One process's view of a 2-process run whose rank 1 read another data folder (the
    collectives answered as the other process would)."""

    def __init__(self):
        super().__init__(rank=0, world_size=1, backend="gloo")

    def from_rank0(self, value):
        return value

    def settle(self, error=None):
        pass

    def all_values(self, value):
        if isinstance(value, dict) and "train" in value:  # the data identity: rank 1's labels differ
            other = {**value, "train": {**value["train"], "labels_sha256": "f" * 64}}
            return [value, other]
        return [value, value]  # the settings fingerprint: the same


def test_processes_that_read_other_data_all_refuse_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr("sat.tasks.train.parallel.setup", lambda *_: _OtherDataOnRank1())
    message = user_error(sat.train, [*TINY, "trainer.num_threads=1"], tmp_path / "run")
    assert message.startswith("process(es) 1 read other training data than process 0 (synthetic: 512 training "
                              "samples, labels hash ffffffffffff; sizes [448, 64, 256] vs synthetic: 512")
    assert not (tmp_path / "run").exists()
