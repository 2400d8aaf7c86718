"""Real human label noise: CIFAR-10N / CIFAR-100N as :class:`~sat.data.noise.Noise`
kinds (``noise=cifar10n noise.label=worse``).

Unlike the synthetic kinds nothing is drawn: the noisy labels are a published fact, so
the pattern does not depend on a seed. The pattern's ``rate`` is the realised fraction
of labels that differ from the clean ones (CIFAR-10N: worse ~40%, aggre ~9%,
random1-3 ~17-18%; CIFAR-100N noisy ~40%).
"""

from __future__ import annotations

from pathlib import Path

import torch

from sat.config.roles import FILE, NEUTRAL, PER_PROCESS
from sat.config.trust import trusted
from sat.data.noise.base import Noise
from sat.data.noise.cifar_n import download_human_labels, human_label_file, load_human_labels
from sat.data.noise.pattern import NoisePattern
from sat.errors import UserError


class HumanLabelNoise(Noise):
    """The labels of one CIFAR-N label set in place of the dataset's own."""

    dataset: str = ""  # the dataset the labels belong to (a key of HUMAN_LABEL_FILES)
    arg_roles = {"path": (FILE,), "download": (FILE, NEUTRAL, PER_PROCESS), "from_file": (FILE,)}

    def __init__(self, label: str, path: str, download: bool = False, from_file: str | None = None):
        super().__init__(rate=0.0, seed=0, from_file=from_file)
        spec = human_label_file(self.dataset)
        if label not in spec.label_keys:
            raise UserError(key="label", value=label, problem=f"is not a {spec.title} label set",
                            accepted=", ".join(spec.label_keys))
        self.label, self.path, self.download = label, str(path), bool(download)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(label={self.label!r}, path={self.path!r}, download={self.download}, "
                f"from_file={self.from_file!r})")

    def draw(self, images, labels, num_classes, *, class_map=None, mean=None, std=None, dataset=None) -> NoisePattern:
        if self.from_file is not None:  # a replay: the file's kind must match; it has no seed or set rate
            return self._replay(len(labels), dataset, settings=False)
        spec = human_label_file(self.dataset)
        if num_classes != spec.num_classes:
            raise UserError(f"noise={self.kind} needs dataset={self.dataset} ({spec.num_classes} classes); "
                            f"got a dataset of {num_classes} classes")
        clean = torch.as_tensor(labels, dtype=torch.int64).cpu()
        path = download_human_labels(self.dataset, self.path) if self.download else Path(self.path)
        noisy = load_human_labels(path, self.dataset, clean)[spec.label_keys[self.label]]
        changed = torch.nonzero(noisy != clean).flatten()  # sorted, as patterns store them
        rate = len(changed) / len(clean) if len(clean) else 0.0
        return NoisePattern(self.kind, rate, self.seed, changed, noisy, None, dataset)


@trusted("noise", "sat.data.human_noise.CIFAR10NLabelNoise")  # (its name in checkpoints before 0.4)
class CIFAR10NLabelNoise(HumanLabelNoise):
    """CIFAR-10N: ``label`` worse | aggre | random1 | random2 | random3."""

    kind = "cifar10n"
    dataset = "cifar10"

    def __init__(self, label: str = "worse", path: str = "data/CIFAR-10_human.pt", download: bool = False,
                 from_file: str | None = None):
        super().__init__(label, path, download, from_file)


@trusted("noise", "sat.data.human_noise.CIFAR100NLabelNoise")
class CIFAR100NLabelNoise(HumanLabelNoise):
    """CIFAR-100N: ``label`` noisy (the only set)."""

    kind = "cifar100n"
    dataset = "cifar100"

    def __init__(self, label: str = "noisy", path: str = "data/CIFAR-100_human.pt", download: bool = False,
                 from_file: str | None = None):
        super().__init__(label, path, download, from_file)
