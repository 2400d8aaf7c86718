"""Labels refined by a trained run (or by a person reviewing its suspects), replayed
from the file it wrote."""

from __future__ import annotations

from typing import Any

import torch

from sat.config.trust import trusted
from sat.data.noise.base import Noise
from sat.data.noise.pattern import NoisePattern
from sat.errors import UserError


@trusted("noise", "sat.data.noise.RefinedLabels")  # (its name before 0.4)
class RefinedLabels(Noise):
    """Labels refined by a trained run (``evaluate.py checkpoint=... report=label_errors``
    writes them as ``refined_labels.pt``), replayed from that file: ``noise=refined
    noise.from_file=.../refined_labels.pt``. Nothing is drawn, so no rate or seed."""

    kind = "refined"

    def __init__(self, from_file: str | None = None, rate: float | None = None, seed: int | None = None):
        # rate/seed: accepted because experiments set them for every noise kind; the
        # refined labels' own realised rate is what the run records.
        super().__init__(rate=0.0, seed=0, from_file=from_file)

    def draw(self, images, labels, num_classes, *, class_map=None, mean=None, std=None, dataset=None) -> NoisePattern:
        if self.from_file is None:
            raise UserError(key="from_file", value=None, problem="is needed by noise=refined",
                            accepted="a refined_labels.pt written by python evaluate.py checkpoint=... "
                                     "report=label_errors")
        return self._replay(len(labels), dataset, settings=False)


def refined_pattern(labels: torch.Tensor, clean_labels: torch.Tensor, dataset: dict[str, Any] | None, *,
                    removed: torch.Tensor | None = None, source: dict[str, Any] | None = None) -> NoisePattern:
    """The pattern ``noise=refined`` replays: ``labels`` over the training pool (its
    order), its realised rate against the pool's ``clean_labels``; ``removed``: sample ids
    left out of training; ``source``: where the labels came from (kept in the file and
    shown in the summary of a run on them)."""
    changed = torch.nonzero(labels != clean_labels).flatten()
    return NoisePattern("refined", len(changed) / max(len(labels), 1), 0, changed, labels, None, dataset,
                        removed=removed, source=source)
