"""How well a per-sample score finds wrong labels, where the true labels are known
(injected noise, CIFAR-N's ``clean_label``).

A *suspicion score* is higher for samples more likely to carry a wrong label:

- SAT / ELR soft targets t:   ``1 - t[i, given_i]``   (:func:`disagreement_with_given`)
- a model's probabilities p:  ``1 - p[i, given_i]``   (CE's baseline; :func:`disagreement_from_logits`)

Two views of quality: the *ranking* (AUROC: the chance that a random wrong-labelled
sample scores above a random correct one, ties counting one half, i.e. the
Mann-Whitney U statistic over n_wrong * n_right) and a *flag set* (e.g. "argmax of the
soft target != given label": precision, recall, F1). Pure tensor functions, no sklearn.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def disagreement_with_given(distribution: Tensor, given: Tensor) -> Tensor:
    """``1 - distribution[i, given_i]`` for rows of a per-sample class distribution."""
    return 1.0 - distribution.double().gather(1, given.long().view(-1, 1)).squeeze(1)


def disagreement_from_logits(logits: Tensor, given: Tensor) -> Tensor:
    """``1 - softmax(logits)[i, given_i]``: a model's suspicion of its training labels."""
    return disagreement_with_given(logits.double().softmax(dim=1), given)


def flags_from_argmax(distribution: Tensor, given: Tensor) -> Tensor:
    """Flag the samples whose most likely class is not their given label."""
    return distribution.argmax(dim=1) != given


def flag_quality(flagged: Tensor, wrong: Tensor) -> dict[str, float]:
    """Precision, recall and F1 of ``flagged`` as a detector of ``wrong`` (both boolean,
    one entry per sample). Precision is 0 when nothing is flagged, F1 is 0 when
    precision and recall are; recall is NaN when no label is wrong (nothing to find)."""
    flagged, wrong = flagged.bool().flatten(), wrong.bool().flatten()
    if flagged.shape != wrong.shape:
        raise ValueError(f"flagged has {flagged.numel()} entries but wrong has {wrong.numel()}")
    hits, n_flagged, n_wrong = torch.stack([(flagged & wrong).sum(), flagged.sum(), wrong.sum()]).tolist()
    precision = hits / n_flagged if n_flagged else 0.0
    recall = hits / n_wrong if n_wrong else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def average_ranks(scores: Tensor) -> Tensor:
    """1-based ranks of ``scores`` in ascending order, tied values sharing the mean of
    the ranks they occupy (float64)."""
    values, inverse, counts = torch.unique(scores.flatten(), sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # the rank of each distinct value's last occurrence
    return (last - (counts.double() - 1) / 2)[inverse]


def auroc(scores: Tensor, wrong: Tensor) -> float:
    """Area under the ROC curve of ranking by ``scores`` (higher = more suspect) against
    the boolean ``wrong``: ``U / (n_wrong * n_right)``, U the Mann-Whitney statistic from
    average ranks. 1 = every wrong label above every right one, 0.5 = chance (or all
    tied), 0 = reversed; NaN when either class is empty."""
    scores, wrong = scores.flatten(), wrong.bool().flatten()
    if scores.shape != wrong.shape:
        raise ValueError(f"scores has {scores.numel()} entries but wrong has {wrong.numel()}")
    if torch.isnan(scores.double()).any():
        raise ValueError("scores contain NaN; a ranking needs comparable values")
    n_wrong = int(wrong.sum())
    n_right = len(wrong) - n_wrong
    if n_wrong == 0 or n_right == 0:
        return math.nan
    rank_sum = average_ranks(scores)[wrong].sum().item()
    u = rank_sum - n_wrong * (n_wrong + 1) / 2
    return u / (n_wrong * n_right)


def detection_quality(scores: Tensor, wrong: Tensor, flagged: Tensor) -> dict[str, float]:
    """``precision``, ``recall``, ``f1`` of ``flagged`` and ``auroc`` of ``scores``."""
    return {**flag_quality(flagged, wrong), "auroc": auroc(scores, wrong)}


def soft_label_detection(distribution: Tensor, given: Tensor, wrong: Tensor) -> dict[str, float]:
    """Detection quality of a per-sample distribution (soft targets, or a model's
    probabilities): ranked by ``1 - d[i, given_i]``, flagged where argmax != given."""
    return detection_quality(disagreement_with_given(distribution, given), wrong, flags_from_argmax(distribution, given))


def confident_learning(given: Tensor, out_of_sample_probs: Tensor) -> tuple[Tensor, Tensor]:
    """Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) through cleanlab: the
    label issues ``cleanlab.filter.find_label_issues`` flags, and a suspicion score for
    the ranking (1 - cleanlab's self-confidence label quality, i.e. ``1 - p[i, given_i]``).
    The probabilities must be out-of-sample (K-fold cross-validation,
    :mod:`sat.tasks.evaluate.cross_val`). Returns ``(scores, flagged)``."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        from sat.errors import UserError

        raise UserError("confident learning needs the cleanlab package; accepted: pip install 'sat[cleanlab]'") from None
    labels, probs = given.long().cpu().numpy(), out_of_sample_probs.double().cpu().numpy()
    flagged = find_label_issues(labels, probs)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    return torch.as_tensor(1.0 - quality, dtype=torch.float64), torch.as_tensor(flagged, dtype=torch.bool)
