"""Streaming a file split: the loader's contract on PNG/JPEG files read from disk, the
same batches as the same files held in memory (augmentation included), exact resume,
and results that do not depend on the number of workers."""

from __future__ import annotations

import pytest
import torch
from image_folder_files import write_list_dataset
from torchvision.io import ImageReadMode, decode_image, read_file

from sat.data.augment import CropFlip, RandomResizedCrop
from sat.data.lists import read_split
from sat.data.splits import FileReading, StreamSettings
from sat.data.stream import FileBatches, view
from sat.errors import UserError

SIZE = 8


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = write_list_dataset(tmp_path_factory.mktemp("folder"), num_train=22, num_test=4)
    return read_split(root, {"list": "train.txt"}, num_classes=3).with_reading(FileReading(SIZE, 10))


def batches(loader, epochs: int = 1) -> list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    return [[(x.clone(), y.clone(), i.clone()) for x, y, i in loader] for _ in range(epochs)]


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b)
        for (x0, y0, i0), (x1, y1, i1) in zip(epoch_a, epoch_b):
            assert torch.equal(i0, i1) and torch.equal(y0, y1) and torch.equal(x0, x1)


def test_iteration_contract(split):
    loader = split.loader(5, shuffle=True, augment=RandomResizedCrop(), seed=0)
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


def test_the_view_is_the_decoded_file_resized_and_centre_cropped(split):
    x, _, index = next(iter(split.loader(4)))
    assert index.tolist() == [0, 1, 2, 3]  # unshuffled: list order
    image = decode_image(read_file(str(split.path(2))), mode=ImageReadMode.RGB)
    assert torch.equal((x[2] * 255).round().to(torch.uint8), view(image, split.reading))
    assert torch.equal(split.in_memory().images[:4], (x * 255).round().to(torch.uint8))


@pytest.mark.parametrize("augment", [None, CropFlip(padding=2), RandomResizedCrop()], ids=["none", "crop", "rrc"])
def test_streamed_and_in_memory_give_the_same_batches(split, augment):
    """One owner of augmentation: the same split streamed from files or decoded into
    memory, with the same augmentation and seed, gives bit-identical batches."""
    streamed = split.loader(6, shuffle=True, augment=augment, seed=5)
    memory = split.in_memory().loader(6, shuffle=True, augment=augment, seed=5)
    assert_same(batches(streamed, epochs=2), batches(memory, epochs=2))


def test_relabelled_split_yields_its_labels(split):
    noisy = split.with_labels((split.labels + 1) % 3)
    for _, y, index in noisy.loader(8, shuffle=True):
        assert torch.equal(y, noisy.labels[index]) and not torch.equal(y, split.labels[index])
    assert torch.equal(noisy.true_labels, split.labels)
    with pytest.raises(UserError, match="got 3 labels for a split of 22"):
        split.with_labels(torch.zeros(3, dtype=torch.int64))


def test_resume_mid_epoch_continues_with_the_next_batch(split):
    def loader(seed):
        return split.streamed(StreamSettings(num_workers=1)).loader(4, shuffle=True, augment=CropFlip(2),
                                                                              seed=seed)

    reference = sum(batches(loader(4), epochs=3), [])  # 6 batches per epoch
    first = loader(4)
    batches(first, epochs=1)
    for taken, _ in enumerate(first, start=1):  # stop after 2 batches of the second epoch, as a preempted run does
        if taken == 2:
            break
    assert first.position == 2
    state = first.state_dict()
    assert state["position"] == 2 and state["order"] is not None
    resumed = loader(0)  # the state, not the constructor's seed, decides
    resumed.load_state_dict(state)
    rest = sum(batches(resumed, epochs=2), [])  # the rest of epoch 2, then epoch 3
    assert len(rest) == 4 + 6 and resumed.position == 0 and resumed.state_dict()["order"] is None
    assert_same([reference[8:]], [rest])


def test_resume_refuses_another_dataset(split):
    state = split.loader(4).state_dict()
    with pytest.raises(UserError, match="state is for 22 samples but the split has 5"):
        split.subset(range(5)).loader(4).load_state_dict(state)


def test_results_do_not_depend_on_the_number_of_workers(split):
    def run(workers, persistent=False):
        streaming = StreamSettings(num_workers=workers, persistent_workers=persistent)
        return batches(split.streamed(streaming).loader(4, shuffle=True, augment=RandomResizedCrop(), seed=1), 2)

    base = run(0)
    assert_same(base, run(2))
    assert_same(base, run(2, persistent=True))


def test_iterating_leaves_the_global_rng_alone(split):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for _ in split.streamed(StreamSettings(num_workers=1)).loader(8, shuffle=True, augment=RandomResizedCrop()):
        pass
    assert torch.equal(torch.rand(3), expected)


def test_missing_file_at_read_time_names_it(tmp_path):
    root = write_list_dataset(tmp_path, num_train=3, num_test=1)
    small = read_split(root, {"list": "train.txt"}, num_classes=3).with_reading(FileReading(SIZE, SIZE))
    (root / small.file(1)).unlink()
    with pytest.raises(UserError, match="001.jpg could not be read"):
        list(small.loader(3))


def test_bad_reader_values_are_user_errors(split):
    for streaming, value in ((StreamSettings(num_workers=-1), "^num_workers=-1"),
                             (StreamSettings(decode="gpu"), "^decode='gpu'"),
                             (StreamSettings(decode="cuda"), "^decode='cuda' but JPEG decoding")):
        with pytest.raises(UserError, match=value):
            FileBatches(split.streamed(streaming), "cpu")


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_images_are_one_line_and_16_bit_pngs_are_scaled(tmp_path, workers):
    """A damaged file, a decompression bomb (refused from its header), a BMP (which
    torchvision cannot decode) are one-line errors from any reader worker; a 16-bit PNG
    becomes the 8-bit image it shows, as an 8-bit one would."""
    import zlib
    from struct import pack

    from image_folder_files import write_image

    def png(width: int, height: int, depth: int, rows: bytes) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return pack(">I", len(data)) + kind + data + pack(">I", zlib.crc32(kind + data))
        header = pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")

    pixel16 = pack(">HHH", 65535, 32896, 0)  # white-ish red, half green, no blue
    (tmp_path / "deep.png").write_bytes(png(2, 2, 16, (b"\x00" + pixel16 * 2) * 2))
    write_image(tmp_path / "flat.png", torch.tensor([255, 128, 0], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2)
                .contiguous())
    (tmp_path / "bomb.png").write_bytes(png(60000, 60000, 8, b"")[:33])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 10)
    (tmp_path / "image.bmp").write_bytes(b"BM" + pack("<IHHI", 70, 0, 0, 54) + pack("<IiiHH", 40, 2, 2, 1, 24)
                                         + b"\x00" * 24)
    for name in ("deep.png", "flat.png", "bomb.png", "broken.jpg", "image.bmp"):
        (tmp_path / "l.txt").write_text(f"{name} 0\n")
        split = read_split(tmp_path, {"list": "l.txt"}, num_classes=2).with_reading(FileReading(2, 2))
        split = split.streamed(StreamSettings(num_workers=workers))
        if name.endswith("png") and name != "bomb.png":
            x, _, _ = next(iter(split.loader(1)))
            assert torch.equal((x[0, :, 0, 0] * 255).round(), torch.tensor([255.0, 128.0, 0.0]))
            continue
        with pytest.raises(UserError) as info:
            list(split.loader(1))
        assert "\n" not in str(info.value) and name in str(info.value), str(info.value)


def test_random_resized_crop_draws_per_sample_from_the_loader_generator():
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    same = torch.stack([images[0]] * 64)
    rrc = RandomResizedCrop(scale=(0.08, 1.0))
    out = rrc(same, torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 16, 16) and out.dtype == torch.float32
    assert len({tuple(o.flatten()[:20].tolist()) for o in out}) > 50  # each sample its own crop
    again = rrc(same, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, rrc(same, torch.Generator().manual_seed(1)))
    with pytest.raises(UserError, match=r"scale=\[2, 1\]"):
        RandomResizedCrop(scale=[2, 1])


def test_main_process_decoding_path_matches_worker_decoding(split):
    """The CUDA path (workers read bytes, the main process decodes JPEGs in one batched
    call and the rest one by one, then takes the view) exercised on the CPU, where
    torchvision's batched decode_jpeg also runs: it must give the workers' results."""
    def run(main_decode):
        loader = split.loader(6, shuffle=True, augment=CropFlip(2), seed=2)
        if main_decode:  # what decode=cuda sets up, on the CPU
            loader.source.gpu_decode, loader.source._reader.decode = True, False
        return batches(loader, epochs=2)

    assert_same(run(False), run(True))
