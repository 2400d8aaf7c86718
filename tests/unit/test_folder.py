"""Image-folder datasets: label lists in the benchmarks' layouts, sample ids, and
one-line errors for anything missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from image_folder_files import random_image, write_image, write_list_dataset
from omegaconf import OmegaConf

from sat.config import validate
from sat.config.build import USER_CONFIG
from sat.config.roles import file_args
from sat.data.datasets import DatasetSplits
from sat.data.folder import ImageFolderSource
from sat.data.lists import ListSpec, read_split
from sat.data.noise import UniformLabelNoise
from sat.data.prepare import choose_loader, load, prepare
from sat.data.splits import FileReading, ImageSet
from sat.errors import UserError

CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"
PRESETS = ["clothing1m", "food101n", "animal10n", "mini_webvision", "image_folder"]


def preset(name: str):
    """A dataset preset as its node (without the defaults list Hydra reads: the augmentation it picks)."""
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg.pop("defaults", None)
    return cfg


def one_line(info: pytest.ExceptionInfo) -> str:
    """The UserError's message (Hydra's instantiate wraps it), checked to be one line."""
    e = info.value
    while e is not None and not isinstance(e, UserError):
        e = e.__cause__
    assert e is not None, f"no UserError behind {info.value!r}"
    msg = str(e)
    assert "\n" not in msg
    return msg


def test_column_lists_give_paths_labels_and_line_ids(tmp_path):
    write_list_dataset(tmp_path, num_train=6, num_test=2)
    lines = (tmp_path / "train.txt").read_text().splitlines()
    (tmp_path / "train.txt").write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")  # a blank line keeps numbering
    split = read_split(tmp_path, {"list": "train.txt"}, num_classes=3)
    assert len(split) == 6 and split.labels.dtype == torch.int64
    assert split.ids.tolist() == [0, 1, 2, 4, 5, 6]  # the line numbers, blank line skipped
    assert split.file(3) == lines[3].split()[0] and split.labels[3] == int(lines[3].split()[1])
    assert split.path(0).is_file() and split.describe(3) == f"train.txt:5 {lines[3].split()[0]}"


def test_clothing1m_layout_key_lists_label_files_and_clean_subset(tmp_path):
    g = torch.Generator().manual_seed(0)
    names = [f"images/{i % 2}/{i:02d}/{i}.jpg" for i in range(6)]
    for name in names:
        write_image(tmp_path / name, random_image(g, 0, 8, 8))
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "noisy_label_kv.txt").write_text("".join(f"{n} {i % 14}\n" for i, n in enumerate(names)))
    (ann / "clean_label_kv.txt").write_text(f"{names[1]} 7\n{names[4]} 2\n{names[5]} 13\n")
    (ann / "noisy_train_key_list.txt").write_text("".join(f"{n}\n" for n in names[:4]))
    (ann / "clean_val_key_list.txt").write_text(f"{names[4]}\n")
    (ann / "clean_test_key_list.txt").write_text(f"{names[5]}\n")
    cfg = preset("clothing1m")
    cfg.root = str(tmp_path)
    data = instantiate(cfg).load()
    assert data.num_classes == 14 and data.input_shape == (3, 224, 224) and data.mean[0] == 0.485
    assert (data.train.reading.image_size, data.train.reading.resize) == (224, 256)
    assert data.train.labels.tolist() == [0, 1, 2, 3] and data.train.clean_labels.tolist() == [-1, 7, -1, -1]
    assert data.val.labels.tolist() == [2] and data.test.labels.tolist() == [13] and data.test.ids.tolist() == [0]
    assert data.train.true_labels is None  # clean labels known for some samples only: no memorisation metrics
    prepared = prepare(data, UniformLabelNoise(rate=0.0), "cpu", loader_kind="stream")
    assert prepared.train.files is data.train.files and prepared.val.files is data.val.files  # no copy, no holdout


def test_food101n_layout_labels_from_class_folders(tmp_path):
    g = torch.Generator().manual_seed(0)
    classes = ["apple_pie", "baby_back_ribs", "baklava"]
    (tmp_path / "food-101/meta").mkdir(parents=True)
    (tmp_path / "food-101/meta/classes.txt").write_text("\n".join(classes) + "\n")
    (tmp_path / "Food-101N_release/meta").mkdir(parents=True)
    train = [f"{c}/{k}{c[:2]}.jpg" for c in classes for k in "ab"]
    (tmp_path / "Food-101N_release/meta/imagelist.tsv").write_text("class_name/key\n" + "\n".join(train) + "\n")
    for key in train:
        write_image(tmp_path / "Food-101N_release/images" / key, random_image(g, 0, 8, 8))
    (tmp_path / "food-101/meta/test.txt").write_text("baklava/1011328\napple_pie/99\n")
    for key in ("baklava/1011328", "apple_pie/99"):
        write_image(tmp_path / "food-101/images" / f"{key}.jpg", random_image(g, 0, 8, 8))
    cfg = preset("food101n")
    cfg.root = str(tmp_path)
    data = instantiate(cfg, val_size=2).load()
    assert data.num_classes == 101 and data.class_names[:3] == tuple(classes)
    assert data.train.labels.tolist() == [0, 0, 1, 1, 2, 2] and data.train.ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert data.test.labels.tolist() == [2, 0] and data.test.file(0) == "food-101/images/baklava/1011328.jpg"
    prepared = prepare(data, UniformLabelNoise(rate=0.0), "cpu", loader_kind="stream")
    train, val = prepared.train, prepared.val  # a seeded random holdout, not the class-sorted tail
    assert len(train) == 4 and len(val) == 2
    assert sorted(train.ids.tolist() + val.ids.tolist()) == data.train.ids.tolist()
    again = prepare(data, UniformLabelNoise(rate=0.0), "cpu", loader_kind="stream")
    assert torch.equal(again.val.ids, val.ids) and val.ids.tolist() != [5, 6]


def test_animal10n_layout_labels_from_file_names(tmp_path):
    g = torch.Generator().manual_seed(0)
    for split, names in (("training", ["3_00002.jpg", "0_00001.jpg", "9_00003.jpg"]), ("testing", ["4_00001.jpg"])):
        for name in names:
            write_image(tmp_path / split / name, random_image(g, 0, 64, 64))
    cfg = preset("animal10n")
    cfg.root = str(tmp_path)
    data = instantiate(cfg).load()
    assert data.input_shape == (3, 64, 64) and "defaults" not in OmegaConf.load(CONF / "animal10n.yaml")  # crop+flip
    assert data.train.labels.tolist() == [0, 3, 9]  # sorted by name; id = position
    assert data.train.file(0) == "training/0_00001.jpg" and data.test.labels.tolist() == [4]


def test_mini_webvision_keeps_the_first_50_classes_with_full_list_ids(tmp_path):
    g = torch.Generator().manual_seed(0)
    (tmp_path / "info").mkdir()
    train = [("google/q0001/a.jpg", 0), ("google/q0800/b.jpg", 799), ("google/q0050/c.jpg", 49)]
    (tmp_path / "info/train_filelist_google.txt").write_text("".join(f"{p} {c}\n" for p, c in train))
    (tmp_path / "info/val_filelist.txt").write_text("val000001.jpg 60\nval000002.jpg 3\n")
    for p, _ in train[::2]:  # the image of the dropped class need not exist
        write_image(tmp_path / p, random_image(g, 0, 8, 8))
    write_image(tmp_path / "val_images_256/val000002.jpg", random_image(g, 0, 8, 8))
    cfg = preset("mini_webvision")
    cfg.root = str(tmp_path)
    data = instantiate(cfg).load()
    assert data.num_classes == 50 and data.train.labels.tolist() == [0, 49] and data.train.ids.tolist() == [0, 2]
    assert data.test.file(0) == "val_images_256/val000002.jpg" and data.test.ids.tolist() == [1]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_name_their_layout_and_fail_in_one_line_without_data(tmp_path, name):
    cfg = preset(name)
    assert (CONF / f"{name}.yaml").read_text().startswith("# ")
    assert cfg.num_classes is None or cfg.num_classes >= 10  # image_folder: inferred, or required by lists
    assert cfg.resize >= cfg.image_size and "<root>" in cfg.layout_hint
    cfg.root = str(tmp_path)
    if name == "image_folder":
        cfg.num_classes, cfg.layout = 3, "lists"
    source = instantiate(cfg)  # checks the values, reads nothing
    assert source.input_shape == (3, cfg.image_size, cfg.image_size) and file_args(type(source)) == {"root"}
    with pytest.raises(Exception) as info:
        source.load()
    msg = one_line(info)
    assert msg.startswith(f"root={tmp_path}") and "expected layout: <root>/" in msg  # the library names its argument


def test_missing_root_names_the_value_and_layout(tmp_path):
    with pytest.raises(UserError) as info:
        ImageFolderSource("x", str(tmp_path / "nowhere"), 3, train={"list": "train.txt"}, test={"list": "test.txt"},
                          layout_hint="<root>/train.txt").load()
    msg = one_line(info)
    assert "nowhere" in msg and "<root>/train.txt" in msg


def test_missing_list_file_shows_an_example_line(tmp_path):
    with pytest.raises(UserError) as info:
        read_split(tmp_path, {"list": "train.txt"})
    msg = one_line(info)
    assert "train.txt not found" in msg and "'relative/path.jpg 3'" in msg


def test_missing_image_names_the_file_and_its_line(tmp_path):
    write_list_dataset(tmp_path, num_train=5, num_test=1)
    missing = tmp_path / "images/train/003.jpg"
    missing.unlink()
    with pytest.raises(UserError) as info:
        read_split(tmp_path, {"list": "train.txt"}, num_classes=3)
    msg = one_line(info)
    assert "1 of 5 images" in msg and "images/train/003.jpg (line 4)" in msg
    assert len(read_split(tmp_path, {"list": "train.txt"}, num_classes=3, check_files=False)) == 5


@pytest.mark.parametrize(
    "content, spec, expected",
    [
        ("a.jpg\n", {"list": "l.txt"}, "l.txt:1: 'a.jpg' has no label"),
        ("a.jpg x\n", {"list": "l.txt"}, "'x' is not an integer label"),
        ("a.jpg 7\n", {"list": "l.txt"}, "label 7 is out of range"),
        ("a.jpg 1\n", {"list": "l.txt", "labels": "colour"}, "labels='colour' is not supported"),
        ("a.jpg\n", {"list": "l.txt", "labels": "file"}, "no label_file"),
        ("a.jpg\n", {"list": "l.txt", "labels": "folder"}, "names no classes"),
    ],
)
def test_bad_lists_are_one_line_user_errors(tmp_path, content, spec, expected):
    (tmp_path / "l.txt").write_text(content)
    with pytest.raises(UserError) as info:
        read_split(tmp_path, spec, num_classes=3, check_files=False)
    assert expected in one_line(info)


@pytest.mark.parametrize(
    "override, expected",
    [
        (dict(num_classes=1), "dataset.num_classes=1"),
        (dict(image_size=0), "dataset.image_size=0"),
        (dict(resize=8, image_size=16), "dataset.resize=8"),
        (dict(layout="zip"), "dataset.layout='zip'"),
        (dict(val_size=99), "dataset.val_size=99"),
        (dict(root="/nowhere"), "dataset.root=/nowhere is not a folder"),
    ],
)
def test_bad_dataset_values_name_the_key(tmp_path, override, expected):
    write_list_dataset(tmp_path, num_train=4, num_test=1)
    args = dict(name="x", root=str(tmp_path), num_classes=3, train={"list": "train.txt"}, test={"list": "test.txt"},
                image_size=8, resize=8) | override
    node = OmegaConf.create({"_target_": "sat.data.folder.ImageFolderSource", **args})
    with pytest.raises(UserError) as info:  # built and read as a run does: the errors name the config key
        with validate.config_node("dataset"):
            data = load(USER_CONFIG.build(node, "dataset", "dataset"))
        prepare(data, UniformLabelNoise(rate=0.0), "cpu")
    assert one_line(info).startswith(expected)


@pytest.mark.parametrize(
    "split, expected",
    [
        ({"file": "train.txt"}, "accepted: the keys list (required)"),
        ({"list": "train.txt", "colour": 1}, "train={"),
        ({"list": "train.txt", "labels": "exif"}, "train.labels='exif'"),
        ({"list": "../train.txt"}, "train.list='../train.txt' is not supported; accepted: a path relative to root"),
        ({"list": "t.txt", "labels": "file", "label_file": "/etc/labels"}, "train.label_file='/etc/labels'"),
    ],
)
def test_bad_split_entries_fail_before_reading_files(tmp_path, split, expected):
    with pytest.raises(UserError) as info:
        ImageFolderSource("x", str(tmp_path / "not-there"), 3, train=split, test={"list": "test.txt"})
    assert expected in one_line(info)


def test_split_subset_and_relabel_keep_ids(tmp_path):
    write_list_dataset(tmp_path, num_train=6, num_test=1)
    split = read_split(tmp_path, ListSpec("train.txt"), num_classes=3)
    sub = split.subset([4, 1])
    assert sub.ids.tolist() == [4, 1] and sub.file(0) == split.file(4)
    noisy = split.with_labels(torch.arange(6) % 3)
    assert noisy.labels.tolist() == [0, 1, 2, 0, 1, 2] and torch.equal(noisy.ids, split.ids)
    with pytest.raises(UserError, match="got 2 labels for a split of 6"):
        split.with_labels(torch.zeros(2))


def test_auto_loader_keeps_small_data_on_the_device(tmp_path):
    write_list_dataset(tmp_path, num_train=6, num_test=2)
    split = read_split(tmp_path, ListSpec("train.txt"), num_classes=3)

    def files(n: int, size: int) -> DatasetSplits:
        reading = FileReading(size, size)
        big = split.subset(torch.arange(n) % len(split)).with_reading(reading)
        return DatasetSplits("x", big, split.with_reading(reading), 3, (0.5,) * 3, (0.2,) * 3)

    assert choose_loader("auto", files(55_000, 64), "cpu") == "device"  # ANIMAL-10N: 0.68 GB
    assert choose_loader("auto", files(1_025_000, 224), "cpu") == "stream"  # Clothing1M: 154 GB
    small = files(100, 8)
    assert choose_loader("auto", small, "cpu", limit_bytes=(100 + 6) * 3 * 8 * 8 - 1) == "stream"
    assert choose_loader("stream", small, "cpu") == "stream"
    tensors = DatasetSplits("t", ImageSet(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64),
                                          torch.arange(4)), ImageSet(torch.zeros(1, 1, 2, 2, dtype=torch.uint8),
                                                                     torch.zeros(1, dtype=torch.int64), torch.arange(1)),
                            2, (0.5,), (0.2,))
    assert choose_loader("stream", tensors, "cpu") == "device"  # data in memory stays there
    with pytest.raises(UserError, match="^loader_kind='disk'"):
        choose_loader("disk", small, "cpu")


def write_class_folders(root: Path, classes=("cat", "dog", "ant"), per_class: int = 3) -> Path:
    g = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for k, name in enumerate(classes):
            for i in range(per_class if split == "train" else 1):
                sub = "deep/" if i == 2 else ""  # torchvision walks sub-folders too
                write_image(root / split / name / f"{sub}{i}.png", random_image(g, k, 8, 8))
    return root


def test_class_folders_layout_as_torchvision_image_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    write_class_folders(tmp_path)
    source = ImageFolderSource("x", str(tmp_path), layout="auto", train={"list": "train.txt"}, image_size=8, resize=8)
    assert source.layout == "class_folders" and source.num_classes == 3  # inferred from the folders
    data = source.load()
    reference = ImageFolder(str(tmp_path / "train"))
    assert data.class_names == tuple(reference.classes) == ("ant", "cat", "dog")  # sorted as torchvision does
    assert [str(tmp_path / f) for f in data.train.file_names()] == [p for p, _ in reference.samples]
    assert data.train.labels.tolist() == [c for _, c in reference.samples] and data.train.ids.tolist() == list(range(9))
    assert data.test.labels.tolist() == [0, 1, 2] and data.train.describe(0) == "train:1 train/ant/0.png"


@pytest.mark.parametrize("case, expected", [("both", "holds both a training list"), ("neither", "holds neither"),
                                            ("count", "num_classes=5 but"), ("extra", "test/bee is not a class")])
def test_class_folder_layout_errors_are_one_line(tmp_path, case, expected):
    write_class_folders(tmp_path)
    kwargs = dict(layout="auto", train={"list": "train.txt"}, image_size=8, resize=8)
    if case == "both":
        (tmp_path / "train.txt").write_text("train/ant/0.png 0\n")
    if case == "neither":
        kwargs["train_folder"] = "training"
    if case == "count":
        kwargs["num_classes"] = 5
    if case == "extra":
        write_image(tmp_path / "test/bee/0.png", random_image(torch.Generator(), 0, 8, 8))
    with pytest.raises(UserError) as info:
        ImageFolderSource("x", str(tmp_path), **kwargs).load()
    assert expected in one_line(info)


@pytest.mark.parametrize("content, expected", [
    (b"../../outside/secret.png 0\n", "lies outside root; accepted: paths relative to root"),
    (b"/etc/passwd 0\n", "lies outside root"),
    (b"\xff\xfeimage 0\n", "is not UTF-8 text"),
])
def test_list_files_that_point_outside_the_root_or_are_not_text_are_one_line(tmp_path, content, expected):
    (tmp_path / "l.txt").write_bytes(content)
    with pytest.raises(UserError) as info:
        read_split(tmp_path, {"list": "l.txt"}, num_classes=3, check_files=False)
    assert expected in one_line(info)


def test_a_byte_order_mark_is_dropped_and_odd_splits_are_named(tmp_path, caplog):
    write_list_dataset(tmp_path, num_train=4, num_test=1)
    lines = (tmp_path / "train.txt").read_text()
    (tmp_path / "train.txt").write_bytes("\ufeff".encode() + (lines + lines.splitlines()[0] + "\n").encode())
    (tmp_path / "test.txt").write_text((tmp_path / "train.txt").read_text(encoding="utf-8-sig"))
    with caplog.at_level("WARNING", logger="sat"):
        data = ImageFolderSource("x", str(tmp_path), 9, train={"list": "train.txt"}, test={"list": "test.txt"},
                                 image_size=8, resize=8).load()
    assert data.train.file(0) == lines.split()[0]  # the BOM is not part of the first path
    text = caplog.text
    assert "more than once" in text and "same images as the training split" in text and "have no training image" in text
