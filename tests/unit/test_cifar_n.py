"""CIFAR-10N / CIFAR-100N: the loader on small files in the published format (a
torch-saved dict of numpy int64 arrays), its checks, the refusal of a pickle with a
payload, and the noise kinds built on it."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_files import write_cifar10, write_cifar100
from omegaconf import OmegaConf

import sat.data.noise.cifar_n as cifar_n
from sat.data.datasets import CIFAR
from sat.data.noise.cifar_n import HUMAN_LABEL_FILES, download_human_labels, load_human_labels
from sat.data.noise.human import CIFAR10NLabelNoise, CIFAR100NLabelNoise
from sat.errors import UserError

CONF = Path(__file__).resolve().parents[2] / "conf" / "noise"
WHERE = r"get data/CIFAR-10_human\.pt from https://github\.com/UCSC-REAL/cifar-10-100n"


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, per_batch=20)
    return CIFAR("cifar10", str(root), val_size=10).load()


def human_labels(clean: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Label sets in the published layout: worse changes every 2nd label, aggre every 10th."""
    rng = np.random.default_rng(seed)
    out = {"clean_label": clean.copy()}
    for key, every in [("worse_label", 2), ("aggre_label", 10), ("random_label1", 3), ("random_label2", 4),
                       ("random_label3", 5)]:
        noisy = clean.copy()
        noisy[::every] = (noisy[::every] + rng.integers(1, 10, len(noisy[::every]))) % 10
        out[key] = noisy
    return out


def save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_loads_the_published_format_and_checks_it_against_the_dataset(cifar10, tmp_path):
    clean = cifar10.train.labels.numpy()
    published = human_labels(clean)
    labels = load_human_labels(save(tmp_path / "CIFAR-10_human.pt", published), "cifar10", cifar10.train.labels)
    assert set(labels) == set(published)
    for key, values in labels.items():
        assert values.dtype == torch.int64 and values.tolist() == published[key].tolist()


def test_cifar10n_noise_replaces_the_labels_with_the_chosen_human_set(cifar10, tmp_path):
    clean = cifar10.train.labels
    published = human_labels(clean.numpy())
    path = save(tmp_path / "h.pt", published)
    pattern = CIFAR10NLabelNoise(label="aggre", path=str(path)).draw(cifar10.train.images, clean, 10)
    expected = torch.from_numpy(published["aggre_label"])
    assert torch.equal(pattern.labels, expected)
    assert pattern.indices.tolist() == [i for i in range(len(clean)) if expected[i] != clean[i]]
    assert pattern.kind == "cifar10n" and pattern.rate == pytest.approx(len(pattern.indices) / len(clean))
    assert pattern.realised_error(clean) == pattern.rate == pytest.approx(0.1)  # every 10th label changed
    images, labels = pattern.apply(cifar10.train.images, clean)
    assert torch.equal(images, cifar10.train.images) and torch.equal(labels, expected)
    # a saved pattern replays through from_file, as the synthetic kinds do
    pattern.save(tmp_path / "noise.pt")
    again = CIFAR10NLabelNoise(label="aggre", path="missing.pt", from_file=str(tmp_path / "noise.pt")).draw(None, clean, 10)
    assert again.sha256() == pattern.sha256()


def test_cifar100n_on_the_real_cifar100_layout(tmp_path):
    write_cifar100(tmp_path, train=200)
    data = CIFAR("cifar100", str(tmp_path), val_size=10).load()
    clean = data.train.labels.numpy()
    noisy = (clean + (np.arange(len(clean)) % 5 == 0)) % 100
    coarse = [int(c) for c in clean % 20]  # the published file also holds coarse labels as lists
    path = save(tmp_path / "CIFAR-100_human.pt", {"clean_label": clean, "noisy_label": noisy,
                                                   "clean_coarse_label": coarse, "noisy_coarse_label": coarse})
    pattern = CIFAR100NLabelNoise(path=str(path)).draw(None, data.train.labels, 100)
    assert pattern.kind == "cifar100n" and pattern.rate == pytest.approx(0.2)
    assert pattern.labels.tolist() == noisy.tolist()


def malformed(clean: np.ndarray) -> list[tuple[str, object, str]]:
    good = human_labels(clean)
    shuffled = {k: np.roll(v, 1) for k, v in good.items()}  # the labels of another image order
    return [
        ("a list", list(good.values()), "holds a list, not a dict"),
        ("a key missing", {k: v for k, v in good.items() if k != "worse_label"}, "keys worse_label are missing"),
        # only int dtypes are allowed to unpickle at all
        ("float labels", {**good, "aggre_label": good["aggre_label"].astype(np.float32)},
         r"cannot be read .*\(UnpicklingError\)"),
        ("2-d labels", {**good, "random_label1": good["random_label1"].reshape(-1, 2)},
         "random_label1 is a int64 array of shape"),
        ("a tensor", {**good, "worse_label": torch.from_numpy(good["worse_label"])}, "worse_label is a Tensor"),
        ("too short", {k: v[:-1] for k, v in good.items()}, f"has {len(clean) - 1} labels but the dataset has {len(clean)}"),
        ("out of range", {**good, "random_label3": good["random_label3"] + 5}, r"outside \[0, 10\)"),
        ("negative", {**good, "random_label2": good["random_label2"] - 10}, r"outside \[0, 10\)"),
        ("another order", shuffled, "clean_label differs from the cifar10 training labels at"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_malformed_files_give_one_line_errors_saying_where_to_get_the_file(cifar10, tmp_path, case):
    name, obj, message = malformed(cifar10.train.labels.numpy())[case]
    path = save(tmp_path / "h.pt", obj)
    with pytest.raises(UserError, match=message) as err:
        load_human_labels(path, "cifar10", cifar10.train.labels)
    assert "\n" not in str(err.value) and str(path) in str(err.value) and re.search(WHERE, str(err.value))


def test_missing_and_unreadable_files(cifar10, tmp_path):
    with pytest.raises(UserError, match=f"^path=.*no CIFAR-10N label file there; {WHERE} \\(or set download=true\\)"):
        load_human_labels(tmp_path / "nope.pt", "cifar10", cifar10.train.labels)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(UserError, match=f"cannot be read as a dict of numpy int arrays .*; {WHERE}") as err:
        load_human_labels(tmp_path / "junk.pt", "cifar10", cifar10.train.labels)
    assert "\n" not in str(err.value)


class Payload:
    """Unpickling this creates ``marker``: stands for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_with_a_payload_is_refused_and_runs_nothing(cifar10, tmp_path):
    good = human_labels(cifar10.train.labels.numpy())
    marker = tmp_path / "payload-ran"
    path = save(tmp_path / "evil.pt", {**good, "worse_label": Payload(marker)})
    with pytest.raises(UserError, match="cannot be read as a dict of numpy int arrays"):
        load_human_labels(path, "cifar10", cifar10.train.labels)
    assert not marker.exists()
    # the payload is live: an unrestricted load would have run it
    probe = tmp_path / "probe"
    torch.load(save(tmp_path / "probe.pt", {"x": Payload(probe)}), weights_only=False)
    assert probe.exists()


def test_an_object_array_is_refused(cifar10, tmp_path):
    good = human_labels(cifar10.train.labels.numpy())
    path = save(tmp_path / "h.pt", {**good, "aggre_label": good["aggre_label"].astype(object)})
    with pytest.raises(UserError, match="cannot be read"):
        load_human_labels(path, "cifar10", cifar10.train.labels)


def test_bad_noise_settings_name_the_value(cifar10, tmp_path):
    # the library names its argument (the task layer puts the config path, noise., in front)
    with pytest.raises(UserError, match=r"^label='best'.*accepted: worse, aggre, random1, random2, random3$"):
        CIFAR10NLabelNoise(label="best")
    with pytest.raises(UserError, match=r"^label='worse'.*accepted: noisy"):
        CIFAR100NLabelNoise(label="worse")
    with pytest.raises(UserError, match="noise=cifar10n needs dataset=cifar10"):
        CIFAR10NLabelNoise(path=str(tmp_path / "x.pt")).draw(None, torch.zeros(100, dtype=torch.int64), 100)


def test_download_checks_the_sha256_and_lands_whole(cifar10, tmp_path, monkeypatch):
    source = save(tmp_path / "CIFAR-10_human.pt", human_labels(cifar10.train.labels.numpy()))
    monkeypatch.setattr(cifar_n, "RAW_URL", source.parent.as_uri() + "/{file_name}")  # file:// stands for https://
    spec = HUMAN_LABEL_FILES["cifar10"]
    monkeypatch.setitem(HUMAN_LABEL_FILES, "cifar10",
                        dataclasses.replace(spec, sha256=hashlib.sha256(source.read_bytes()).hexdigest()))
    got = download_human_labels("cifar10", tmp_path / "dl" / "CIFAR-10_human.pt")
    assert got.read_bytes() == source.read_bytes() and [p.name for p in got.parent.iterdir()] == [got.name]
    assert load_human_labels(got, "cifar10", cifar10.train.labels)["worse_label"].shape == (len(cifar10.train.labels),)

    monkeypatch.setitem(HUMAN_LABEL_FILES, "cifar10", dataclasses.replace(spec, sha256="0" * 64))
    with pytest.raises(UserError, match=f"have sha256 .*, not the published 000000000000.*; {WHERE}"):
        download_human_labels("cifar10", tmp_path / "dl2" / "CIFAR-10_human.pt")
    assert not (tmp_path / "dl2").exists()
    monkeypatch.setattr(cifar_n, "RAW_URL", (tmp_path / "nowhere").as_uri() + "/{file_name}")
    with pytest.raises(UserError, match=f"could not download CIFAR-10N labels from .*URLError.*; {WHERE}"):
        download_human_labels("cifar10", tmp_path / "dl3" / "CIFAR-10_human.pt")


@pytest.mark.parametrize("name,cls,file_name", [("cifar10n", CIFAR10NLabelNoise, "CIFAR-10_human.pt"),
                                                ("cifar100n", CIFAR100NLabelNoise, "CIFAR-100_human.pt")])
def test_configs_instantiate(name, cls, file_name):
    from hydra.utils import instantiate

    node = OmegaConf.load(CONF / f"{name}.yaml")
    assert set(node) - {"_target_"} == set(inspect.signature(cls).parameters)
    noise = instantiate(OmegaConf.create({"paths": {"data_dir": "/d"}, "noise": node}).noise)
    assert type(noise) is cls and cls.kind == name and noise.path == f"/d/{file_name}" and not noise.download
