"""Class -> class maps for asymmetric (class-conditional) label noise: facts about
datasets, kept apart from the noise code that applies them."""

from __future__ import annotations

from collections.abc import Sequence

# Standard class maps for asymmetric noise (class -> target; identity = no flip).
# CIFAR-10: truck->automobile, bird->airplane, deer->horse, cat<->dog.
CIFAR10_ASYMMETRIC: tuple[int, ...] = (0, 1, 0, 5, 7, 3, 6, 7, 8, 1)
# MNIST: 2->7, 3->8, 5<->6, 7->1.
MNIST_ASYMMETRIC: tuple[int, ...] = (0, 1, 7, 8, 4, 6, 5, 1, 8, 9)


def superclass_asymmetric_map(fine_to_coarse: Sequence[int]) -> list[int]:
    """CIFAR-100 style map: each fine class -> the next fine class (cyclic, by
    index) within its super-class. A super-class of one class maps to itself."""
    fine_to_coarse = [int(c) for c in fine_to_coarse]
    groups: dict[int, list[int]] = {}
    for fine, coarse in enumerate(fine_to_coarse):
        groups.setdefault(coarse, []).append(fine)  # ascending fine index
    class_map = list(range(len(fine_to_coarse)))
    for members in groups.values():
        for i, fine in enumerate(members):
            class_map[fine] = members[(i + 1) % len(members)]
    return class_map


def cyclic_asymmetric_map(num_classes: int) -> list[int]:
    """c -> (c + 1) % K, for synthetic data without a natural confusion map."""
    return [(c + 1) % num_classes for c in range(num_classes)]
