"""A model's selective-classification evaluation in one call: score the calibration and
evaluation images, then :func:`sat.selective.risk.evaluate_selective`. Plain tensors in,
so the evaluate task only has to choose the splits and write the files."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sat.engine import predict_images
from sat.selective.risk import COVERAGES_PCT, SelectiveResult, calibration_split, evaluate_selective
from sat.selective.scores import confidence_scores, score_name


def _scored(model, images, labels, num_classes, batch_size, amp_dtype) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(scores, correct) on the CPU and the model's number of outputs."""
    logits = predict_images(model, images, batch_size, amp_dtype)
    scores, pred = confidence_scores(logits, num_classes)
    return scores.cpu(), (pred == labels.to(pred.device)).cpu(), logits.shape[1]


def evaluate_model(
    name: str,
    model: nn.Module,
    num_classes: int,
    evaluation: tuple[torch.Tensor, torch.Tensor],
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    calibration_size: int = 2000,
    calibration_seed: int = 10,
    coverages_pct: Sequence[float] = COVERAGES_PCT,
    batch_size: int = 1024,
    amp_dtype: torch.dtype | None = None,
    meta: dict | None = None,
) -> SelectiveResult:
    """Selective error of ``model`` on ``evaluation = (uint8 images, labels)`` (images on
    the model's device) at thresholds from ``calibration``. Without a calibration set the
    evaluation set is split as the reference split the test set (:func:`calibration_split`:
    ``calibration_size`` images for the thresholds, the rest for the errors). ``meta``
    gains ``score`` (abstain or max_softmax) and ``calibration`` (which split)."""
    scores, correct, outputs = _scored(model, *evaluation, num_classes, batch_size, amp_dtype)
    if calibration is None:
        cal_idx, ev_idx = calibration_split(len(scores), calibration_size, calibration_seed)
        cal, ev = (scores[cal_idx], correct[cal_idx]), (scores[ev_idx], correct[ev_idx])
        split = f"{calibration_size} of the evaluation set (seed {calibration_seed})"
    else:
        cal, ev = _scored(model, *calibration, num_classes, batch_size, amp_dtype)[:2], (scores, correct)
        split = "separate set"
    info = {**(meta or {}), "score": score_name(outputs, num_classes), "calibration": split}
    return evaluate_selective(name, cal, ev, coverages_pct, info)
