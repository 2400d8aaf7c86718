"""Datasets in their real on-disk formats, the device loader and batched augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from cifar_files import write_cifar10, write_cifar100

from sat.data.augment import CropFlip
from sat.data.class_maps import CIFAR10_ASYMMETRIC
from sat.data.datasets import CIFAR, Digits, Synthetic, read_batch
from sat.data.loader import DeviceLoader
from sat.errors import UserError


def test_cifar10_reads_the_real_pickle_format(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=20, test=30)
    data = CIFAR("cifar10", root=str(tmp_path), val_size=10).load()
    assert data.train.images.shape == (100, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (30, 3, 32, 32) and data.num_classes == 10 and data.val_size == 10
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    row = np.asarray(raw["data"][0])  # first image: 1024 red, 1024 green, 1024 blue bytes
    assert data.train.images[0, 0].flatten().tolist() == row[:1024].tolist()
    assert data.train.images[0, 2, 0, :4].tolist() == row[2048:2052].tolist()
    assert data.train.labels[:20].tolist() == raw["labels"]
    assert data.asymmetric_map == list(CIFAR10_ASYMMETRIC)
    assert data.train.ids.tolist() == list(range(100))  # the position in the original batches


def test_cifar_batches_are_read_without_running_code(tmp_path):
    """A data_batch file carrying a pickle payload is refused and runs nothing."""
    import os

    write_cifar10(tmp_path, per_batch=5, test=5)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Payload(), "labels": [0]}, protocol=2))
    with pytest.raises(UserError, match="not a CIFAR batch file.*refused global"):
        read_batch(path)
    with pytest.raises(UserError, match="data_batch_1"):
        CIFAR("cifar10", root=str(tmp_path)).load()
    assert not marker.exists()


def test_dataset_settings_are_checked_before_any_file_is_read(tmp_path):
    with pytest.raises(UserError, match="^name='cifar11' is not supported; accepted: cifar10, cifar100"):
        CIFAR("cifar11", root=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="^val_size=-1 is out of range"):
        CIFAR("cifar10", root=str(tmp_path / "nowhere"), val_size=-1)
    source = CIFAR("cifar100", root=str(tmp_path / "nowhere"))
    assert (source.num_classes, source.input_shape) == (100, (3, 32, 32))  # known without loading


def test_cifar100_fine_labels_and_superclass_asymmetric_map(tmp_path):
    write_cifar100(tmp_path)
    data = CIFAR("cifar100", root=str(tmp_path), val_size=0).load()
    assert data.num_classes == 100 and len(data.train) == 200
    amap = data.asymmetric_map
    for fine in range(100):  # the written files put fine class f in super-class f % 20
        assert amap[fine] % 20 == fine % 20 and amap[fine] != fine


def test_missing_cifar_gives_one_clear_line(tmp_path):
    with pytest.raises(UserError) as e:
        CIFAR("cifar10", root=str(tmp_path / "nowhere")).load()
    msg = str(e.value)
    assert "\n" not in msg and "nowhere" in msg and "set download=true" in msg and "experiment=quickstart" in msg


def test_digits_is_embedded_and_split_fixed():
    a, b = Digits().load(), Digits().load()
    assert a.train.images.shape == (1300, 1, 8, 8) and len(a.test) == 497
    assert torch.equal(a.test.labels, b.test.labels) and int(a.train.images.max()) == 255
    assert set(a.train.labels.tolist()) == set(range(10))
    # ids are scikit-learn's indices: each sample maps back to its original image and label
    from sklearn.datasets import load_digits as sk_digits

    # (the file is read without importing scikit-learn: every image and label equals its loader's)
    sk = sk_digits()
    sk_images = torch.from_numpy((sk.images * 255 / 16).round()).to(torch.uint8).unsqueeze(1)
    for split in (a.train, a.test):
        assert torch.equal(split.images, sk_images[split.ids])
        assert torch.equal(split.labels, torch.from_numpy(sk.target)[split.ids])


def test_validation_split_is_the_tail():
    data = Synthetic(num_train=100, val_size=20).load()
    train, val = data.train.tail(20)
    assert len(train) == 80 and torch.equal(val.labels, data.train.labels[80:])
    with pytest.raises(UserError, match="^size=100 is out of range"):
        data.train.tail(100)


def test_loader_covers_each_sample_once_per_epoch_with_its_index():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    labels = torch.arange(10)
    loader = DeviceLoader(images, labels, batch_size=4, shuffle=True, seed=1)
    seen = []
    for x, y, index in loader:
        assert x.dtype == torch.float32 and float(x.max()) <= 1.0
        assert torch.equal(y, index) and torch.allclose(x[:, 0, 0, 0] * 255, index.float())
        seen += index.tolist()
    assert sorted(seen) == list(range(10)) and len(loader) == 3
    again = [i.tolist() for _, _, i in loader]
    assert sum(again, []) != seen  # a new permutation every epoch


def test_loader_is_repeatable_from_its_state():
    images, labels = torch.zeros(16, 1, 2, 2, dtype=torch.uint8), torch.arange(16)
    a = DeviceLoader(images, labels, 4, shuffle=True, seed=0)
    state = a.state_dict()
    first = [i.tolist() for _, _, i in a]
    b = DeviceLoader(images, labels, 4, shuffle=True, seed=99)
    b.load_state_dict(state)
    assert [i.tolist() for _, _, i in b] == first


def test_loader_continues_mid_epoch_from_its_state():
    """Stopped after two batches, a loader restored from its state yields the rest of
    that epoch's order, with the same augmentation draws, then the same next epochs."""
    images = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(20)
    full = DeviceLoader(images, labels, 6, shuffle=True, augment=CropFlip(padding=1), seed=3)
    expected = [(x, i) for _ in range(2) for x, _, i in full]
    part = DeviceLoader(images, labels, 6, shuffle=True, augment=CropFlip(padding=1), seed=3)
    it = iter(part)
    got = [(x, i) for x, _, i in (next(it), next(it))]
    state = part.state_dict()
    assert state["position"] == 2 and state["order"] is not None
    rest = DeviceLoader(images, labels, 6, shuffle=True, augment=CropFlip(padding=1), seed=0)
    rest.load_state_dict(state)
    got += [(x, i) for _ in range(2) for x, _, i in rest]
    assert len(got) == len(expected) == 8
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, expected))


def test_crop_flip_matches_torchvision_semantics():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = CropFlip(padding=2, flip=True)(x, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(64):  # each output is a (maybe flipped) window of the zero-padded input
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        windows = [padded[:, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)
    assert not torch.equal(out, x)
    unchanged = CropFlip(padding=0, flip=False)(x, g)
    assert torch.equal(unchanged, x)


def test_two_views_of_an_augmentation_are_independent_draws():
    """``TwoViews(augment)`` (``augment=crop_flip_x2``): the loader yields ``x`` as two float
    views of the same samples (DivideMix), each its own draw of the augmentation, both
    decided by the loader's generator (an exact resume)."""
    from sat.data.views import TwoViews

    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    loader = DeviceLoader(images, torch.arange(12), 5, shuffle=True, augment=TwoViews(CropFlip(padding=2)), seed=1)
    batches = list(loader)
    assert len(batches) == 3
    for (v1, v2), _, index in batches:
        assert v1.shape == v2.shape == (len(index), 3, 8, 8) and v1.dtype == v2.dtype == torch.float32
        assert not torch.equal(v1, v2)  # two draws, not one view twice
    again = DeviceLoader(images, torch.arange(12), 5, shuffle=True, augment=TwoViews(CropFlip(padding=2)), seed=1)
    for ((a1, a2), _, i), ((b1, b2), _, j) in zip(batches, again):
        assert torch.equal(i, j) and torch.equal(a1, b1) and torch.equal(a2, b2)  # the loader's generator decides
    (plain, same), _, _ = next(iter(DeviceLoader(images, torch.arange(12), 12,
                                                 augment=TwoViews(CropFlip(padding=0, flip=False)))))
    assert torch.equal(plain, same) and torch.equal((plain * 255).round().to(torch.uint8), images)
