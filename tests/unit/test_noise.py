"""Noise injection: exact semantics of every kind, determinism, persistence."""

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sat.data.class_maps import CIFAR10_ASYMMETRIC, MNIST_ASYMMETRIC, cyclic_asymmetric_map, superclass_asymmetric_map
from sat.data.noise import (
    AsymmetricLabelNoise,
    FlipLabelNoise,
    GaussianImageNoise,
    Noise,
    NoisePattern,
    RandomPixelsNoise,
    ShuffledPixelsNoise,
    UniformLabelNoise,
)
from sat.errors import UserError

N, K = 10_000, 10
CONF = Path(__file__).resolve().parents[2] / "conf" / "noise"
LABEL_NOISES = [UniformLabelNoise, FlipLabelNoise, AsymmetricLabelNoise]
IMAGE_NOISES = [GaussianImageNoise, RandomPixelsNoise, ShuffledPixelsNoise]
EXTRA = dict(class_map=CIFAR10_ASYMMETRIC, mean=(0.5, 0.4, 0.6), std=(0.1, 0.15, 0.05))


@pytest.fixture(scope="module")
def labels():
    return torch.randint(0, K, (N,), generator=torch.Generator().manual_seed(123))


@pytest.fixture(scope="module")
def images():
    """1000 images whose 64 pixels are distinct within each channel, so a
    permutation of pixel positions can be read back from the pixel values."""
    g = torch.Generator().manual_seed(7)
    order = torch.stack([torch.randperm(64, generator=g) for _ in range(1000)])  # (n, H*W)
    chans = torch.stack([order + 64 * c for c in range(3)], dim=1)  # (n, C, H*W), values < 192
    return chans.view(1000, 3, 8, 8).to(torch.uint8)


def img_labels(n=1000):
    return torch.arange(n) % K


def draw(cls, images, labels, rate=0.4, seed=0):
    return cls(rate=rate, seed=seed).draw(images, labels, K, **EXTRA)


# --- label noise --------------------------------------------------------------

def test_flip_never_keeps_label_and_changes_exactly(labels):
    rate = 0.3
    p = draw(FlipLabelNoise, None, labels, rate)
    m = int(rate * N)
    assert len(p.indices) == m
    assert (p.labels[p.indices] != labels[p.indices]).all()
    mask = torch.ones(N, dtype=torch.bool)
    mask[p.indices] = False
    assert torch.equal(p.labels[mask], labels[mask])
    assert p.realised_error(labels) == m / N
    assert p.labels.min() >= 0 and p.labels.max() < K


def test_uniform_redraws_over_all_classes(labels):
    rate = 0.5
    p = draw(UniformLabelNoise, None, labels, rate)
    assert len(p.indices) == int(rate * N) == len(torch.unique(p.indices))
    assert p.indices.dtype == torch.int64 and torch.equal(p.indices, p.indices.sort().values)
    assert abs(p.realised_error(labels) - rate * (1 - 1 / K)) < 0.015
    mask = torch.ones(N, dtype=torch.bool)
    mask[p.indices] = False
    assert torch.equal(p.labels[mask], labels[mask])
    assert set(p.labels[p.indices].tolist()) == set(range(K))


def test_asymmetric_cifar10_map_exact(labels):
    rate = 0.4
    p = draw(AsymmetricLabelNoise, None, labels, rate)
    cmap = CIFAR10_ASYMMETRIC
    assert list(cmap) == [0, 1, 0, 5, 7, 3, 6, 7, 8, 1]
    changed = p.labels != labels
    assert torch.equal(torch.nonzero(changed).flatten(), p.indices)
    for c in range(K):
        of_c = labels == c
        n_changed = int((changed & of_c).sum())
        if cmap[c] == c:
            assert n_changed == 0
        else:
            assert n_changed == int(rate * int(of_c.sum()))
            assert (p.labels[changed & of_c] == cmap[c]).all()


def test_class_maps():
    assert list(MNIST_ASYMMETRIC) == [0, 1, 7, 8, 4, 6, 5, 1, 8, 9]
    assert cyclic_asymmetric_map(4) == [1, 2, 3, 0]
    # fine -> coarse: {0, 2, 5}, {1, 4}, {3}
    assert superclass_asymmetric_map([0, 1, 0, 2, 1, 0]) == [2, 4, 5, 3, 1, 0]


def test_asymmetric_superclass_map_on_toy_data():
    fine_to_coarse = [0, 1, 0, 2, 1, 0]
    cmap = superclass_asymmetric_map(fine_to_coarse)
    y = torch.arange(600) % 6
    p = AsymmetricLabelNoise(rate=0.5, seed=1).draw(None, y, 6, class_map=cmap)
    for c in range(6):
        moved = (y == c) & (p.labels != y)
        assert int(moved.sum()) == (0 if cmap[c] == c else 50)
        assert (p.labels[moved] == cmap[c]).all()
        # noise stays inside the super-class
        assert all(fine_to_coarse[t] == fine_to_coarse[c] for t in p.labels[moved].tolist())


def test_asymmetric_needs_class_map(labels):
    with pytest.raises(UserError, match="class_map"):
        AsymmetricLabelNoise(rate=0.2).draw(None, labels, K)
    with pytest.raises(UserError, match="class_map"):
        AsymmetricLabelNoise(rate=0.2).draw(None, labels, K, class_map=[0, 1])


# --- image noise ----------------------------------------------------------------

@pytest.mark.parametrize("cls", IMAGE_NOISES)
def test_image_noise_changes_exactly_chosen_images(cls, images):
    y = img_labels()
    p = draw(cls, images, y, rate=0.3)
    assert len(p.indices) == 300 and torch.equal(p.labels, y)
    assert p.images.dtype == torch.uint8 and p.images.shape == (300, 3, 8, 8)
    new_images, new_labels = p.apply(images, y)
    assert torch.equal(new_labels, y) and p.realised_error(y) == 0.0
    changed = (new_images != images).flatten(1).any(1)
    assert torch.equal(torch.nonzero(changed).flatten(), p.indices)
    assert torch.equal(new_images[p.indices], p.images)


def recovered_perms(images, pattern):
    """The pixel permutation of each chosen image, checked to be shared by its channels."""
    orig = images[pattern.indices].flatten(2).long()  # (m, C, HW), distinct per channel
    noisy = pattern.images.flatten(2).long()
    # orig[..., perm] == noisy  =>  perm = argsort(orig)[noisy - offset]
    inv = orig[:, 0].argsort(1)
    perms = inv.gather(1, noisy[:, 0])
    assert torch.equal(orig.gather(2, perms.unsqueeze(1).expand_as(orig)), noisy)
    return perms


def test_random_pixels_each_image_own_permutation(images):
    p = draw(RandomPixelsNoise, images, img_labels(), rate=0.3)
    perms = recovered_perms(images, p)
    assert len({tuple(q) for q in perms.tolist()}) == len(perms)


def test_shuffled_pixels_one_shared_permutation(images):
    p = draw(ShuffledPixelsNoise, images, img_labels(), rate=0.3)
    perms = recovered_perms(images, p)
    assert (perms == perms[0]).all() and not torch.equal(perms[0], torch.arange(64))


def test_gaussian_per_channel_statistics():
    imgs = torch.zeros(2000, 3, 16, 16, dtype=torch.uint8)
    p = GaussianImageNoise(rate=0.5, seed=3).draw(imgs, torch.zeros(2000, dtype=torch.long), K,
                                                  mean=EXTRA["mean"], std=EXTRA["std"])
    x = p.images.double().div(255).transpose(0, 1).flatten(1)  # (C, pixels)
    assert torch.allclose(x.mean(1), torch.tensor(EXTRA["mean"], dtype=torch.double), atol=0.005)
    assert torch.allclose(x.std(1), torch.tensor(EXTRA["std"], dtype=torch.double), atol=0.005)
    with pytest.raises(UserError, match="mean and std"):
        GaussianImageNoise(rate=0.5).draw(imgs, torch.zeros(2000, dtype=torch.long), K)


def test_image_noise_needs_images():
    with pytest.raises(UserError, match="images"):
        RandomPixelsNoise(rate=0.5).draw(None, img_labels(), K)


# --- common behaviour -------------------------------------------------------------

@pytest.mark.parametrize("cls", LABEL_NOISES + IMAGE_NOISES)
def test_determinism_and_rate_zero(cls, images):
    y = img_labels()
    a, b, c = (draw(cls, images, y, seed=s) for s in (0, 0, 1))
    assert a.sha256() == b.sha256() and torch.equal(a.labels, b.labels) and torch.equal(a.indices, b.indices)
    assert a.sha256() != c.sha256() and not torch.equal(a.indices, c.indices)
    empty = draw(cls, images, y, rate=0.0)
    assert len(empty.indices) == 0 and torch.equal(empty.labels, y)
    new_images, new_labels = empty.apply(images, y)
    assert torch.equal(new_images, images) and torch.equal(new_labels, y)


def test_global_rng_untouched(labels):
    state = torch.get_rng_state()
    draw(UniformLabelNoise, None, labels)
    assert torch.equal(state, torch.get_rng_state())


def test_apply_returns_new_tensors_and_checks_size(labels):
    p = draw(FlipLabelNoise, None, labels)
    before = labels.clone()
    _, new = p.apply(None, labels)
    assert torch.equal(labels, before) and not torch.equal(new, labels)
    new[0] += 1  # a copy: the pattern is not aliased either
    assert p.labels[0] != new[0]
    with pytest.raises(UserError, match=f"{N}.*{N - 1}"):
        p.apply(None, labels[:-1])


@pytest.mark.parametrize("rate,problem", [(1.5, "is out of range"), (-0.1, "is out of range"),
                                          (float("nan"), "is not a number"), ("abc", "is not a number")])
def test_rate_out_of_range(rate, problem):
    with pytest.raises(UserError, match="^" + re.escape(f"rate={rate!r} {problem}; accepted: a number >= 0 and <= 1")):
        UniformLabelNoise(rate=rate)


# --- persistence ------------------------------------------------------------------

@pytest.mark.parametrize("cls", [FlipLabelNoise, RandomPixelsNoise])
def test_save_load_round_trip(cls, images, tmp_path):
    p = draw(cls, images, img_labels())
    path = tmp_path / "sub" / "noise.pt"
    p.save(path)
    assert [f.name for f in path.parent.iterdir()] == ["noise.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert raw["sha256"] == p.sha256()
    q = NoisePattern.load(path, num_samples=1000)
    assert q.sha256() == p.sha256()
    assert (q.kind, q.rate, q.seed) == (p.kind, p.rate, p.seed)
    assert torch.equal(q.indices, p.indices) and torch.equal(q.labels, p.labels)
    assert (q.images is None and p.images is None) or torch.equal(q.images, p.images)


def test_load_detects_tampering_and_bad_files(labels, tmp_path):
    p = draw(UniformLabelNoise, None, labels)
    path = tmp_path / "noise.pt"
    p.save(path)
    raw = torch.load(path, weights_only=True)
    raw["labels"][int(p.indices[0])] ^= 1  # one bit of one label
    torch.save(raw, path)
    with pytest.raises(UserError, match=re.escape(f"noise file {path} is corrupted: hash mismatch")):
        NoisePattern.load(path)

    p.save(path)
    with pytest.raises(UserError, match=f"{N}.*{N + 1}|{N + 1}.*{N}"):
        NoisePattern.load(path, num_samples=N + 1)

    missing = tmp_path / "nope.pt"
    with pytest.raises(UserError, match="nope.pt"):
        NoisePattern.load(missing)

    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="corrupted"):
        NoisePattern.load(path)


def test_from_file_reproduces_pattern(labels, tmp_path):
    p = draw(AsymmetricLabelNoise, None, labels, seed=5)
    path = tmp_path / "noise.pt"
    p.save(path)
    # No class_map needed: the file holds the labels.
    q = AsymmetricLabelNoise(rate=0.4, seed=5, from_file=str(path)).draw(None, labels, K)
    assert q.sha256() == p.sha256() and torch.equal(q.labels, p.labels)
    # A config that states other values than the file's is refused, naming them.
    with pytest.raises(UserError, match=r"^from_file=.* says seed=99; accepted: the file's values \(seed=5\)"):
        AsymmetricLabelNoise(rate=0.4, seed=99, from_file=str(path)).draw(None, labels, K)
    with pytest.raises(UserError, match=r" says rate=0.2; accepted: the file.s values \(rate=0.4\)$"):
        AsymmetricLabelNoise(rate=0.2, seed=5, from_file=str(path)).draw(None, labels, K)
    with pytest.raises(UserError, match="asymmetric"):
        FlipLabelNoise(rate=0.4, seed=5, from_file=str(path)).draw(None, labels, K)
    with pytest.raises(UserError, match=f"{N}"):
        AsymmetricLabelNoise(rate=0.4, seed=5, from_file=str(path)).draw(None, labels[:-1], K)


def test_from_file_of_another_dataset_is_refused(labels, tmp_path):
    """A pattern records the identity of the training set it was drawn for."""
    digits = {"dataset": "digits", "num_samples": N, "labels_sha256": "a" * 64}
    p = FlipLabelNoise(rate=0.4, seed=0).draw(None, labels, K, dataset=digits)
    path = tmp_path / "noise.pt"
    p.save(path)
    same = FlipLabelNoise(rate=0.4, seed=0, from_file=str(path)).draw(None, labels, K, dataset=dict(digits))
    assert same.sha256() == p.sha256() and NoisePattern.load(path).dataset == digits
    other = {**digits, "labels_sha256": "b" * 64}  # same size, other labels or order (another split)
    with pytest.raises(UserError, match="was drawn for digits .* but this run trains on digits"):
        FlipLabelNoise(rate=0.4, seed=0, from_file=str(path)).draw(None, labels, K, dataset=other)
    assert p.sha256() != FlipLabelNoise(rate=0.4, seed=0).draw(None, labels, K, dataset=other).sha256()


def test_noise_file_with_wrong_fields_is_refused(labels, tmp_path):
    p = FlipLabelNoise(rate=0.4, seed=0).draw(None, labels, K)
    path = tmp_path / "noise.pt"
    p.save(path)
    raw = torch.load(path, weights_only=True)
    raw["indices"] = raw["indices"] + N  # indices past the end
    torch.save(raw, path)
    with pytest.raises(UserError, match="wrong shape, type or range"):
        NoisePattern.load(path)


# --- configs --------------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [
    ("uniform", UniformLabelNoise), ("flip", FlipLabelNoise), ("asymmetric", AsymmetricLabelNoise),
    ("gaussian", GaussianImageNoise), ("random_pixels", RandomPixelsNoise),
    ("shuffled_pixels", ShuffledPixelsNoise),
])
def test_configs_instantiate(name, cls):
    from hydra.utils import instantiate

    text = (CONF / f"{name}.yaml").read_text()
    assert text.startswith("# ") and text.count("\n#") == 0
    cfg = OmegaConf.merge({"seed": 7}, {"noise": OmegaConf.create(text)})
    noise = instantiate(cfg.noise)
    assert type(noise) is cls and cls.kind == name and isinstance(noise, Noise)
    assert (noise.rate, noise.seed, noise.from_file) == (0.0, 7, None)
