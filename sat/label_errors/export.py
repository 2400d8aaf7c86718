"""``label_errors.csv``: the training samples whose most likely class (by soft targets
or a model's probabilities) is not their given label, most suspect first. One schema
for every writer (a training run's folder, ``evaluate.py report=label_errors``), so a
tool reading one reads both.

Columns: ``sample_id`` (the id in the dataset's original order), ``given_label``,
``suggested_label`` (the argmax), ``confidence`` (the distribution's mass on it),
``suspicion`` (``1 - mass on the given label``: the ranking), ``true_label`` (-1 where
unknown, e.g. real noisy data) and ``file`` (the image file of a folder dataset, else
empty).
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch import Tensor

from sat.label_errors.detection import disagreement_with_given, flags_from_argmax
from sat.run.files import write_text_atomic

COLUMNS = ("sample_id", "given_label", "suggested_label", "confidence", "suspicion", "true_label", "file")


def write_label_errors(path: str | Path, distribution: Tensor, given: Tensor, ids: Tensor,
                       true: Tensor | None = None, files: list[str] | None = None) -> int:
    """Write the flagged samples of ``distribution`` (one row of class probabilities per
    training sample, aligned with ``given``, ``ids``, ``true`` and ``files``), most
    suspect first (ties in sample order). Returns the number of rows."""
    distribution, given, ids = distribution.detach().double().cpu(), given.cpu(), ids.cpu()
    true = given.new_full(given.shape, -1) if true is None else true.cpu()
    confidence, suggested = distribution.max(dim=1)
    suspicion = disagreement_with_given(distribution, given)
    flagged = flagged_in_order(distribution, given).tolist()

    def table(f) -> None:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in flagged:
            writer.writerow([int(ids[i]), int(given[i]), int(suggested[i]), f"{float(confidence[i]):.4f}",
                             f"{float(suspicion[i]):.4f}", int(true[i]), files[i] if files is not None else ""])

    write_text_atomic(path, table)  # never through a link, never half-written
    return len(flagged)


def flagged_in_order(distribution: Tensor, given: Tensor) -> Tensor:
    """The positions of the flagged samples (argmax != given), most suspect first, ties
    in sample order: the rows of ``label_errors.csv`` and the cards of its review page
    (:mod:`sat.label_errors.page`)."""
    distribution, given = distribution.detach().double().cpu(), given.cpu()
    order = torch.argsort(disagreement_with_given(distribution, given), descending=True, stable=True)
    return order[flags_from_argmax(distribution, given)[order]]
