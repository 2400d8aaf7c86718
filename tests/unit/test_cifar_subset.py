"""CIFAR's ``dataset.num_train``: the first N training images (the CPU presets' subset), CIFAR-10N's rows
with them, and its bad values. Every file here is written by the test (CI never reads a real dataset)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cifar_files import write_cifar10

from sat.data.datasets import CIFAR
from sat.data.noise.cifar_n import load_human_labels
from sat.errors import UserError


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, per_batch=30, test=40)
    return root


def test_num_train_keeps_the_first_training_images(cifar_dir):
    full = CIFAR("cifar10", str(cifar_dir), val_size=0).load()
    cut = CIFAR("cifar10", str(cifar_dir), val_size=10, num_train=100).load()
    assert len(cut.train) == 100 and cut.train.ids.tolist() == list(range(100))
    assert torch.equal(cut.train.images, full.train.images[:100]) and torch.equal(cut.train.labels, full.train.labels[:100])
    assert len(cut.test) == len(full.test) == 40  # the test split is never cut
    assert cut.asymmetric_map == full.asymmetric_map


def test_num_train_beyond_the_files_is_one_line(cifar_dir):
    with pytest.raises(UserError, match=r"^dataset\.num_train=151 is out of range: .* holds 150 training") as info:
        CIFAR("cifar10", str(cifar_dir), num_train=151).load()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [0, -3, 1.5, "all", True])
def test_num_train_not_a_positive_int_is_refused_by_name(cifar_dir, value):
    with pytest.raises(UserError, match=r"^num_train=") as info:
        CIFAR("cifar10", str(cifar_dir), num_train=value)
    assert info.value.key == "num_train" and "\n" not in str(info.value)


def test_cifar10n_rows_follow_a_cut_training_set(cifar_dir, tmp_path):
    """A human-label file of the whole training set on a run of its first N images: its first N rows; a file of
    another order is still refused by the clean-label check."""
    full = CIFAR("cifar10", str(cifar_dir), val_size=0).load().train.labels.numpy()
    worse = (full + 1) % 10
    worse[::3] = full[::3]
    path = tmp_path / "CIFAR-10_human.pt"
    keys = ["aggre_label", "random_label1", "random_label2", "random_label3"]
    torch.save({"clean_label": full, "worse_label": worse, **{k: full.copy() for k in keys}}, path)
    labels = load_human_labels(path, "cifar10", torch.from_numpy(full[:100]))
    assert labels["worse_label"].tolist() == worse[:100].tolist()
    with pytest.raises(UserError, match="clean_label differs from the cifar10 training labels"):
        load_human_labels(path, "cifar10", torch.from_numpy(full[50:]))
