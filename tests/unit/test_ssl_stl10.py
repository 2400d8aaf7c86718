"""The STL-10 binary reader on small files written in the release's layout."""

import numpy as np
import pytest
import torch

from sat.data.stl10 import STL10
from sat.errors import UserError


def _write(folder, name, images):
    # the release stores each channel column-major: write the transposed (C, W, H) bytes
    np.ascontiguousarray(images.numpy().transpose(0, 1, 3, 2)).tofile(folder / name)


def _release(tmp_path, train=4, test=3, unlabeled=2):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    sets = {}
    for split, n in (("train", train), ("test", test), ("unlabeled", unlabeled)):
        x = torch.randint(0, 256, (n, 3, 96, 96), generator=g, dtype=torch.uint8)
        x[:, 0, 0, 1] = 200  # row 0, column 1 of the red channel: would land at (1, 0) if read row-major
        x[:, 0, 1, 0] = 10
        _write(folder, f"{split}_X.bin", x)
        sets[split] = x
        if split != "unlabeled":
            y = (torch.arange(n) % 10 + 1).to(torch.uint8)
            y.numpy().tofile(folder / f"{split}_y.bin")
    return sets


def test_reads_images_rows_first_and_labels_from_zero(tmp_path):
    sets = _release(tmp_path)
    data = STL10(root=str(tmp_path), unlabeled=False).load()
    assert torch.equal(data.train.images, sets["train"]) and torch.equal(data.test.images, sets["test"])
    assert int(data.train.images[0, 0, 0, 1]) == 200 and int(data.train.images[0, 0, 1, 0]) == 10
    assert data.train.labels.tolist() == [0, 1, 2, 3] and data.test.labels.tolist() == [0, 1, 2]
    assert data.input_shape == (3, 96, 96) and data.num_classes == 10


def test_unlabeled_images_come_first_with_label_minus_one(tmp_path):
    sets = _release(tmp_path)
    data = STL10(root=str(tmp_path), unlabeled=True, val_size=1).load()
    assert torch.equal(data.train.images[:2], sets["unlabeled"])
    assert data.train.labels.tolist() == [-1, -1, 0, 1, 2, 3]
    assert data.train.ids.tolist() == [4, 5, 0, 1, 2, 3]
    train, val = data.train.tail(data.val_size)
    assert val.labels.tolist() == [3]  # held out from the labelled images


def test_missing_or_damaged_files_one_line(tmp_path):
    with pytest.raises(UserError) as info:
        STL10(root=str(tmp_path)).load()
    message = str(info.value)
    assert "lacks train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin" in message
    assert "3x96x96" in message and "\n" not in message
    _release(tmp_path)
    (tmp_path / "stl10_binary" / "test_X.bin").write_bytes(b"\0" * 100)
    with pytest.raises(UserError, match="holds 100 bytes, not a whole number of 3x96x96 images"):
        STL10(root=str(tmp_path)).load()
    with pytest.raises(UserError, match="^unlabeled='yes' is not a boolean"):
        STL10(unlabeled="yes")
