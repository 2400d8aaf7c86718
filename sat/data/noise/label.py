"""Label noise: uniform (the paper's), flip (Nakkiran et al.) and class-conditional
(asymmetric) redraws of the chosen samples' labels."""

from __future__ import annotations

import torch

from sat.config.trust import trusted
from sat.data.noise.base import Noise
from sat.errors import UserError


@trusted("noise", "sat.data.noise.UniformLabelNoise")  # (its name before 0.4)
class UniformLabelNoise(Noise):
    """SAT's ``corrupted_label``: redraw chosen labels over all K classes (may stay correct)."""

    kind = "uniform"

    def _draw(self, images, labels, num_classes, gen, **kw):
        chosen = self._choose(len(labels), gen)
        labels = labels.clone()
        labels[chosen] = torch.randint(0, num_classes, (len(chosen),), generator=gen)
        return chosen, labels, None


@trusted("noise", "sat.data.noise.FlipLabelNoise")  # (its name before 0.4)
class FlipLabelNoise(Noise):
    """Nakkiran et al.: chosen labels move to a uniformly random *different* class."""

    kind = "flip"

    def _draw(self, images, labels, num_classes, gen, **kw):
        chosen = self._choose(len(labels), gen)
        if len(chosen) and num_classes < 2:
            raise UserError(f"noise=flip needs at least 2 classes; got num_classes={num_classes}")
        labels = labels.clone()
        # An offset in [1, K) never maps a class to itself and is uniform over the others.
        offset = torch.randint(1, max(num_classes, 2), (len(chosen),), generator=gen)
        labels[chosen] = (labels[chosen] + offset) % num_classes
        return chosen, labels, None


@trusted("noise", "sat.data.noise.AsymmetricLabelNoise")  # (its name before 0.4)
class AsymmetricLabelNoise(Noise):
    """Class-conditional noise: int(rate * n_c) samples of each mapped class c -> class_map[c]."""

    kind = "asymmetric"

    def draw(self, images, labels, num_classes, *, class_map=None, mean=None, std=None, dataset=None):
        if self.from_file is None:
            if class_map is None:
                raise UserError("noise=asymmetric needs a class_map; accepted: a class -> target list of "
                                "length num_classes (e.g. CIFAR10_ASYMMETRIC)")
            cm = torch.as_tensor(class_map, dtype=torch.int64).flatten()
            if len(cm) != num_classes or (len(cm) and (cm.min() < 0 or cm.max() >= num_classes)):
                raise UserError(f"noise=asymmetric class_map={cm.tolist()} is invalid; accepted: "
                                f"{num_classes} entries in [0, {num_classes})")
            class_map = cm
        return super().draw(images, labels, num_classes, class_map=class_map, mean=mean, std=std, dataset=dataset)

    def _draw(self, images, labels, num_classes, gen, *, class_map, **kw):
        new_labels = labels.clone()
        picked = [torch.empty(0, dtype=torch.int64)]
        for c in range(num_classes):
            target = int(class_map[c])
            if target == c:
                continue
            # Selection uses the clean labels, so swaps (cat<->dog) do not cascade.
            members = torch.nonzero(labels == c).flatten()
            pick = members[torch.randperm(len(members), generator=gen)[: int(self.rate * len(members))]]
            new_labels[pick] = target
            picked.append(pick)
        return torch.cat(picked), new_labels, None
