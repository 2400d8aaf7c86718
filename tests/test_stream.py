"""The streaming loader: DeviceLoader's contract on PNG/JPEG files read from disk,
the same epoch orders as DeviceLoader for a seed, exact resume, and results that do
not depend on the number of workers."""

from __future__ import annotations

import random

import pytest
import torch
from torchvision.io import ImageReadMode, decode_image, read_file

from image_folder_files import write_list_dataset
from sat.data.folder import read_split
from sat.data.loader import DeviceLoader
from sat.data.stream import StreamLoader, decode_split
from sat.data.transforms import (RandomResizedCropFlip, ResizeCenterCrop, ResizePadCropFlip, sample_seed,
                                 train_transform)
from sat.errors import UserError

SIZE = 8


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = write_list_dataset(tmp_path_factory.mktemp("folder"), num_train=22, num_test=4)
    return read_split(root, {"list": "train.txt"}, num_classes=3)


def batches(loader, epochs: int = 1) -> list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    return [[(x.clone(), y.clone(), i.clone()) for x, y, i in loader] for _ in range(epochs)]


def test_iteration_contract(split):
    loader = StreamLoader(split, RandomResizedCropFlip(SIZE), batch_size=5, shuffle=True, seed=0)
    assert len(loader) == 5 and loader.device == torch.device("cpu")
    seen = []
    for x, y, index in loader:
        assert x.shape[1:] == (3, SIZE, SIZE) and x.dtype == torch.float32 and len(x) == len(y) == len(index)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.01
        assert y.dtype == torch.int64 and index.dtype == torch.int64
        assert torch.equal(y, split.labels[index])
        seen += index.tolist()
    assert sorted(seen) == list(range(len(split)))
    assert seen != list(range(len(split)))  # shuffled
    assert len(StreamLoader(split, ResizeCenterCrop(SIZE, SIZE), 5, drop_last=True)) == 4


def test_eval_view_is_the_decoded_file_resized_and_centre_cropped(split):
    loader = StreamLoader(split, ResizeCenterCrop(SIZE, 10), batch_size=4)
    x, _, index = next(iter(loader))
    assert index.tolist() == [0, 1, 2, 3]  # unshuffled: list order
    image = decode_image(read_file(str(split.path(2))), mode=ImageReadMode.RGB)
    assert torch.equal((x[2] * 255).round().to(torch.uint8), ResizeCenterCrop(SIZE, 10)(image))
    assert torch.equal(decode_split(split, ResizeCenterCrop(SIZE, 10), batch_size=3)[:4],
                       (x * 255).round().to(torch.uint8))


def test_replaced_labels_are_what_it_yields(split):
    noisy = (split.labels + 1) % 3
    loader = StreamLoader(split, ResizeCenterCrop(SIZE, SIZE), batch_size=8, labels=noisy, shuffle=True)
    for _, y, index in loader:
        assert torch.equal(y, noisy[index]) and not torch.equal(y, split.labels[index])
    with pytest.raises(UserError, match="got 3 labels for 22 files"):
        StreamLoader(split, ResizeCenterCrop(SIZE, SIZE), 8, labels=torch.zeros(3, dtype=torch.int64))


@pytest.mark.parametrize("drop_last", [False, True])
def test_epoch_orders_match_device_loader_for_a_seed(split, drop_last):
    n = len(split)
    images = torch.zeros(n, 3, SIZE, SIZE, dtype=torch.uint8)
    device = DeviceLoader(images, split.labels, batch_size=5, shuffle=True, drop_last=drop_last, seed=7)
    stream = StreamLoader(split, RandomResizedCropFlip(SIZE), batch_size=5, shuffle=True, drop_last=drop_last, seed=7)
    assert len(device) == len(stream)
    for _ in range(3):  # every epoch: the same batches of the same samples
        ours = [i.tolist() for _, _, i in stream]
        theirs = [i.tolist() for _, _, i in device]
        assert ours == theirs
    other = StreamLoader(split, RandomResizedCropFlip(SIZE), batch_size=5, shuffle=True, drop_last=drop_last, seed=8)
    assert [i.tolist() for _, _, i in other] != [i.tolist() for _, _, i in
                                                 StreamLoader(split, RandomResizedCropFlip(SIZE), 5, shuffle=True,
                                                              drop_last=drop_last, seed=7)]


def test_resume_between_epochs_continues_exactly(split):
    def loader(seed):
        return StreamLoader(split, RandomResizedCropFlip(SIZE), batch_size=6, shuffle=True, seed=seed)

    reference = batches(loader(3), epochs=3)
    first = loader(3)
    batches(first, epochs=1)
    state = first.state_dict()
    resumed = loader(99)  # the state, not the constructor's seed, decides
    resumed.load_state_dict(state)
    again = batches(resumed, epochs=2)
    for ref_epoch, epoch in zip(reference[1:], again):
        assert len(ref_epoch) == len(epoch)
        for (x0, y0, i0), (x1, y1, i1) in zip(ref_epoch, epoch):
            assert torch.equal(i0, i1) and torch.equal(y0, y1) and torch.equal(x0, x1)
    # Each epoch draws new crops for the same sample.
    assert not torch.equal(reference[0][0][0], reference[1][0][0])


def test_resume_mid_epoch_continues_with_the_next_batch(split):
    def loader(seed):
        return StreamLoader(split, RandomResizedCropFlip(SIZE), batch_size=4, shuffle=True, seed=seed, num_workers=1)

    reference = sum(batches(loader(4), epochs=3), [])  # 6 batches per epoch
    first = loader(4)
    batches(first, epochs=1)
    taken = 0
    for _ in first:  # stop after 2 batches of the second epoch, as a preempted run does
        taken += 1
        if taken == 2:
            break
    assert first.position == 2
    state = first.state_dict()
    assert state["position"] == 2 and state["order"] is not None
    resumed = loader(0)
    resumed.load_state_dict(state)
    rest = sum(batches(resumed, epochs=2), [])  # the rest of epoch 2, then epoch 3
    assert len(rest) == 4 + 6 and resumed.position == 0 and resumed.state_dict()["order"] is None
    for (x0, y0, i0), (x1, y1, i1) in zip(reference[8:], rest):
        assert torch.equal(i0, i1) and torch.equal(y0, y1) and torch.equal(x0, x1)


def test_resume_refuses_another_dataset(split):
    small = split.subset(range(5))
    state = StreamLoader(split, ResizeCenterCrop(SIZE, SIZE), 4).state_dict()
    with pytest.raises(UserError, match="state is for 22 samples but the split has 5"):
        StreamLoader(small, ResizeCenterCrop(SIZE, SIZE), 4).load_state_dict(state)


def test_results_do_not_depend_on_the_number_of_workers(split):
    def run(workers, persistent=False):
        loader = StreamLoader(split, RandomResizedCropFlip(SIZE), batch_size=4, shuffle=True, seed=1,
                              num_workers=workers, persistent_workers=persistent, prefetch_factor=2)
        return batches(loader, epochs=2)

    base = run(0)
    for other in (run(2), run(2, persistent=True)):
        for epoch_a, epoch_b in zip(base, other):
            assert len(epoch_a) == len(epoch_b)
            for (x0, y0, i0), (x1, y1, i1) in zip(epoch_a, epoch_b):
                assert torch.equal(i0, i1) and torch.equal(y0, y1) and torch.equal(x0, x1)


def test_iterating_leaves_the_global_rng_alone(split):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for _ in StreamLoader(split, RandomResizedCropFlip(SIZE), 8, shuffle=True, num_workers=1):
        pass
    assert torch.equal(torch.rand(3), expected)


def test_missing_file_at_read_time_names_it(split, tmp_path):
    root = write_list_dataset(tmp_path, num_train=3, num_test=1)
    small = read_split(root, {"list": "train.txt"}, num_classes=3)
    (root / small.file(1)).unlink()
    with pytest.raises(FileNotFoundError, match="001.jpg"):
        list(StreamLoader(small, ResizeCenterCrop(SIZE, SIZE), 3))


def test_bad_loader_values_are_user_errors(split):
    for kwargs, value in ((dict(batch_size=0), "trainer.batch_size=0"), (dict(num_workers=-1), "dataset.num_workers=-1"),
                          (dict(decode="gpu"), "dataset.decode='gpu'"), (dict(decode="cuda"), "dataset.decode=cuda")):
        args = dict(batch_size=4) | kwargs
        with pytest.raises(UserError, match=value):
            StreamLoader(split, ResizeCenterCrop(SIZE, SIZE), **args)


def test_random_resized_crop_draws_like_torchvision():
    t = RandomResizedCropFlip(16)
    areas, flips = [], 0
    for i in range(400):
        top, left, h, w, flip = t.params(40, 60, random.Random(sample_seed(0, 0, i)))
        assert 0 <= top <= 40 - h and 0 <= left <= 60 - w and h > 0 and w > 0
        assert 3 / 4 - 0.1 <= w / h <= 4 / 3 + 0.1 or (h, w) == (40, 53)  # the central fallback
        areas.append(h * w / 2400)
        flips += flip
    assert 0.08 - 0.01 <= min(areas) < 0.2 and max(areas) > 0.8 and 150 < flips < 250
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    out = t(image, random.Random(1))
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8


def test_sample_seeds_depend_on_seed_epoch_and_index():
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 450 and sample_seed(1, 2, 3) == sample_seed(1, 2, 3)


def test_pad_crop_flip_is_a_window_of_the_padded_view():
    image = torch.randint(1, 256, (3, 12, 12), dtype=torch.uint8)
    t = ResizePadCropFlip(12, 12, padding=2)
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
    windows = [padded[:, r : r + 12, c : c + 12] for r in range(5) for c in range(5)]
    outs = [t(image, random.Random(k)) for k in range(20)]
    for out in outs:
        assert any(torch.equal(out, w) or torch.equal(out, w.flip(-1)) for w in windows)
    assert any(not torch.equal(o, image) for o in outs)
    assert train_transform("none", 8, 10)(image, random.Random(0)).shape == (3, 8, 8)
    with pytest.raises(UserError, match="dataset.train_augment='cutout'"):
        train_transform("cutout", 8, 8)


def test_main_process_decoding_path_matches_worker_decoding(split):
    """The CUDA path (workers read bytes, the main process decodes JPEGs in one batched
    call and the rest one by one, then transforms) exercised on the CPU, where
    torchvision's batched decode_jpeg also runs: it must give the workers' results."""
    def run(main_decode):
        loader = StreamLoader(split, RandomResizedCropFlip(SIZE), batch_size=6, shuffle=True, seed=2, decode="cpu")
        if main_decode:  # what decode=cuda sets up, on the CPU
            loader.gpu_decode, loader._reader.decode = True, False
        return batches(loader, epochs=2)

    for epoch_a, epoch_b in zip(run(False), run(True)):
        for (x0, y0, i0), (x1, y1, i1) in zip(epoch_a, epoch_b):
            assert torch.equal(i0, i1) and torch.equal(y0, y1) and torch.equal(x0, x1)
