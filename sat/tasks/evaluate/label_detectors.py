"""The detectors of ``evaluate.py report=label_errors``, side by side: the run's soft
targets (SAT, ELR), the model's own probabilities, and (``detector=confident_learning``)
confident learning on out-of-sample probabilities from K-fold cross-validation."""

from __future__ import annotations

from typing import Any

import torch

from sat.engine import predict_images
from sat.label_errors.detection import confident_learning, detection_quality, disagreement_with_given, flags_from_argmax
from sat.tasks.evaluate.cross_val import cross_validate_run

DETECTORS = ("model", "confident_learning")


def compare_detectors(run: Any, soft_targets: torch.Tensor | None, *, batch_size: int, amp_dtype: Any, folds: int,
                      cv_epochs: int | None, seed: int) -> tuple[dict[str, dict[str, float]], dict[str, torch.Tensor]]:
    """Precision, recall, F1 (of the flags) and AUROC (of the ranking) against the known
    wrong labels, for each detector: ``soft targets`` (where the method keeps them),
    ``model probabilities`` and ``confident learning``; and confident learning's
    per-sample score and flag (for the review page)."""
    nd = run.data
    given, wrong, k = nd.train.labels, nd.train.labels != nd.true_train_labels, nd.data.num_classes
    rows: dict[str, dict[str, float]] = {}
    if soft_targets is not None:
        rows["soft targets"] = _quality(soft_targets.double(), given, wrong)
    logits = predict_images(run.model, nd.train.images.to(run.device), batch_size, amp_dtype)[:, :k]
    rows["model probabilities"] = _quality(logits.double().softmax(1).cpu(), given, wrong)
    out_of_sample = cross_validate_run(run, folds=folds, epochs=cv_epochs, seed=seed, amp_dtype=amp_dtype)
    scores, flagged = confident_learning(given, out_of_sample.probs)
    rows["confident learning"] = {**detection_quality(scores, wrong, flagged), "folds": folds}
    return rows, {"CL score": scores, "CL flags": flagged}


def _quality(distribution: torch.Tensor, given: torch.Tensor, wrong: torch.Tensor) -> dict[str, float]:
    return detection_quality(disagreement_with_given(distribution, given), wrong, flags_from_argmax(distribution, given))


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """The detectors as a text table (percent)."""
    width = max(len(name) for name in rows)
    lines = [f"{'detector':<{width}}  precision  recall     F1   AUROC"]
    for name, q in rows.items():
        lines.append(f"{name:<{width}}  {100 * q['precision']:9.1f}  {100 * q['recall']:6.1f}  {100 * q['f1']:5.1f}  "
                     f"{100 * q['auroc']:6.1f}")
    return "\n".join(lines)
