"""Two-view augmentation for self-supervised methods (sat.data.views, kornia)."""

import pytest
import torch

from sat.data.views import TwoViews
from sat.errors import UserError


def _images(n=32, c=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, size, size, generator=g) * 255).to(torch.uint8)


def test_two_float_views_in_unit_range():
    x = _images()
    v1, v2 = TwoViews()(x, torch.Generator().manual_seed(0))
    for v in (v1, v2):
        assert v.shape == x.shape and v.dtype == torch.float32
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    assert not torch.equal(v1, v2)


def test_each_sample_gets_its_own_parameters():
    one = _images(n=1).expand(24, -1, -1, -1).contiguous()  # the same image 24 times
    v1, _ = TwoViews()(one, torch.Generator().manual_seed(0))
    flat = v1.flatten(1)
    distinct = {tuple(row.tolist()) for row in flat}
    assert len(distinct) == 24
    # colour jitter alone (no crop, no flip) is also drawn per sample
    jitter_only = TwoViews(crop_scale=(1.0, 1.0), flip_p=0.0, jitter_p=1.0, grayscale_p=0.0, solarize_p=(0, 0))
    v1, _ = jitter_only(one, torch.Generator().manual_seed(0))
    assert len({tuple(row.tolist()) for row in v1.flatten(1)}) == 24


def test_the_loaders_generator_is_the_only_randomness():
    x, views = _images(), TwoViews()
    torch.manual_seed(1)
    global_state = torch.get_rng_state()
    a = views(x, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), global_state)  # torch's global RNG is left as it was
    torch.manual_seed(2)
    g = torch.Generator().manual_seed(5)
    b = views(x, g)
    assert all(torch.equal(p, q) for p, q in zip(a, b))  # whatever the global RNG
    c = views(x, g)  # the generator advanced: the next batch gets other parameters
    assert not torch.equal(a[0], c[0])


def test_single_channel_images_are_jittered_in_brightness_and_contrast():
    x = _images(c=1, size=8)
    views = TwoViews(crop_scale=(1.0, 1.0), flip_p=0.0, jitter_p=1.0, solarize_p=(0, 0))
    v1, v2 = views(x, torch.Generator().manual_seed(0))
    assert v1.shape == (32, 1, 8, 8) and not torch.allclose(v1, x.float() / 255)
    names = [type(op).__name__ for op in views.pipeline(0, 1, 8, 8)]
    assert "RandomGrayscale" not in names


def test_asymmetric_solarize_and_blur_only_for_large_images():
    views = TwoViews()
    small = [[type(op).__name__ for op in views.pipeline(v, 3, 32, 32)] for v in (0, 1)]
    assert "RandomSolarize" not in small[0] and "RandomSolarize" in small[1]
    assert not any("Blur" in name for name in small[0] + small[1])
    large = [[type(op).__name__ for op in views.pipeline(v, 3, 96, 96)] for v in (0, 1)]
    assert all("RandomGaussianBlur" in names for names in large)


@pytest.mark.parametrize("kwargs, message", [
    (dict(crop_scale=(0.5, 0.2)), "crop_scale=[0.5, 0.2] is not a range"),
    (dict(solarize_p=(0.0, 1.5)), "solarize_p[1]=1.5 is out of range"),
    (dict(jitter=(0.4, 0.4, 0.2)), "jitter=[0.4, 0.4, 0.2] needs 4 values"),
])
def test_bad_values_one_line(kwargs, message):
    with pytest.raises(UserError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        TwoViews(**kwargs)
