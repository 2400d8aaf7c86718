"""SVHN from torchvision's on-disk .mat files, written here in the real format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sat.data.class_maps import MNIST_ASYMMETRIC
from sat.data.svhn import SVHN, channel_stats
from sat.errors import UserError


def write_svhn(folder: Path, train: int = 12, test: int = 7, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Small ``train_32x32.mat`` / ``test_32x32.mat``: X uint8 (32, 32, 3, N), y uint8 (N, 1) in 1..10."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", train), ("test", test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = the digit 0
        savemat(str(folder / f"{split}_32x32.mat"), {"X": x, "y": y})
        written[split] = {"X": x, "y": y}
    return written


def test_reads_the_mat_format_as_torchvision_does(tmp_path, monkeypatch):
    raw = write_svhn(tmp_path)
    data = SVHN(str(tmp_path), val_size=3).load()
    assert data.name == "svhn" and data.num_classes == 10 and data.val_size == 3
    assert data.train.images.shape == (12, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (7, 3, 32, 32) and data.train.labels.dtype == torch.int64
    x = raw["train"]["X"]
    # image n, channel c, row r, column k is X[r, k, c, n]
    assert data.train.images[5, 2, 3, 7].item() == x[3, 7, 2, 5]
    assert data.train.images[0, 0, 31, 0].item() == x[31, 0, 0, 0]
    assert data.train.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]  # 10 -> 0
    assert data.asymmetric_map == list(MNIST_ASYMMETRIC)

    import torchvision  # the reader this one must agree with

    # our small files, not the md5-checked downloads
    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)

    for split, ours in (("train", data.train), ("test", data.test)):
        tv = torchvision.datasets.SVHN(str(tmp_path), split=split, download=False)
        assert np.array_equal(ours.images.numpy(), tv.data) and ours.labels.tolist() == list(tv.labels)


def test_mean_and_std_by_hand(tmp_path):
    write_svhn(tmp_path)
    data = SVHN(str(tmp_path), val_size=0).load()
    x = data.train.images.numpy().astype(np.float64) / 255
    assert data.mean == pytest.approx(x.mean(axis=(0, 2, 3)).tolist(), rel=1e-12)
    assert data.std == pytest.approx(x.std(axis=(0, 2, 3), ddof=1).tolist(), rel=1e-12)
    chunked = channel_stats(data.train.images, chunk=5)  # chunks that do not divide N
    assert chunked[0] == pytest.approx(data.mean, rel=1e-12) and chunked[1] == pytest.approx(data.std, rel=1e-12)


def test_missing_files_give_one_clear_line(tmp_path):
    with pytest.raises(UserError) as e:
        SVHN(str(tmp_path / "nowhere")).load()
    msg = str(e.value)
    assert "\n" not in msg and "nowhere" in msg and "set download=true" in msg and "train_32x32.mat" in msg


def test_a_file_of_the_wrong_shape_is_named(tmp_path):
    from scipy.io import savemat

    write_svhn(tmp_path)
    savemat(str(tmp_path / "test_32x32.mat"), {"X": np.zeros((28, 28, 1, 4), np.uint8), "y": np.ones((4, 1), np.uint8)})
    with pytest.raises(UserError, match="test_32x32.mat") as e:
        SVHN(str(tmp_path)).load()
    assert "\n" not in str(e.value)


def test_config_node():
    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "dataset" / "svhn.yaml")
    assert cfg._target_ == "sat.data.svhn.SVHN" and cfg.download is False and cfg.val_size == 5000
