"""Label and image noise injection.

A :class:`Noise` (built from ``conf/noise/*.yaml``) draws a :class:`NoisePattern` from
the clean training set: which samples are corrupted and what they become. The pattern
is a plain value that can be saved, hashed and re-applied, so a run can be reproduced
(or resumed) with exactly the same corruption.

- ``pattern``: the value and its file format;
- ``base``: what every noise shares (settings, seeded generator, replay from a file);
- ``label``: uniform, flip and asymmetric label noise;
- ``image``: Gaussian images and permuted pixels;
- ``human``: real human labels (CIFAR-10N / CIFAR-100N, read by ``cifar_n``);
- ``refined``: labels refined by a trained run.
"""

from sat.data.noise.base import Noise
from sat.data.noise.image import GaussianImageNoise, RandomPixelsNoise, ShuffledPixelsNoise
from sat.data.noise.label import AsymmetricLabelNoise, FlipLabelNoise, UniformLabelNoise
from sat.data.noise.pattern import NoisePattern
from sat.data.noise.refined import RefinedLabels

__all__ = [
    "AsymmetricLabelNoise",
    "FlipLabelNoise",
    "GaussianImageNoise",
    "Noise",
    "NoisePattern",
    "RandomPixelsNoise",
    "RefinedLabels",
    "ShuffledPixelsNoise",
    "UniformLabelNoise",
]
