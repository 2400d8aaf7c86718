"""The offline linear probe: a linear classifier (scikit-learn's multinomial logistic
regression on standardised features) trained on frozen features of labelled training
images, scored by top-1 accuracy on the test features. The low-label probes train on a
seeded subset: ``label_fraction`` of the images or ``labels_per_class`` of each class."""

from __future__ import annotations

import numpy as np
import torch

from sat.config import validate
from sat.errors import UserError


def check_label_subset(label_fraction: float | None, labels_per_class: int | None) -> tuple[float | None, int | None]:
    """Which labelled subset: a fraction in (0, 1], or N >= 1 per class, or neither (all)."""
    if label_fraction is not None and labels_per_class is not None:
        raise UserError(key="labels_per_class", value=labels_per_class,
                        problem=f"is set beside {{.label_fraction}}={label_fraction}",
                        accepted="one of them (or neither, for all labels)")
    if labels_per_class is not None:
        labels_per_class = validate.positive_int("labels_per_class", labels_per_class)
    if label_fraction is not None:
        label_fraction = validate.number("label_fraction", label_fraction, lo=0.0, hi=1.0, lo_open=True)
    return label_fraction, labels_per_class


def select_labelled(labels: torch.Tensor, label_fraction: float | None = None, labels_per_class: int | None = None,
                    seed: int = 0) -> torch.Tensor:
    """Positions of the labelled subset (sorted): all, a fraction, or N per class."""
    label_fraction, labels_per_class = check_label_subset(label_fraction, labels_per_class)
    y = labels.cpu().numpy()
    rng = np.random.default_rng(seed)
    if labels_per_class is not None:
        n = labels_per_class
        picked = []
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            if len(members) < n:
                raise UserError(key="labels_per_class", value=n,
                                problem=f"is more than class {c}'s {len(members)} training images",
                                accepted=f"{{key}} <= {len(members)}")
            picked.append(rng.permutation(members)[:n])
        return torch.from_numpy(np.sort(np.concatenate(picked)))
    if label_fraction is not None:
        count = max(1, round(label_fraction * len(y)))
        return torch.from_numpy(np.sort(rng.permutation(len(y))[:count]))
    return torch.arange(len(y))


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, max_iter: int = 1000, C: float = 1.0) -> float:
    """Top-1 test accuracy of a logistic regression fitted on the training features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(torch.unique(train_labels)) < 2:
        raise UserError("the linear probe needs labelled training images of at least 2 classes")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(train_features.float().cpu().numpy(), train_labels.cpu().numpy())
    return float(probe.score(test_features.float().cpu().numpy(), test_labels.cpu().numpy()))
