"""Confidence scores and predictions of a classifier, for selective classification.

Higher score = more confident to predict. A model with K + 1 outputs (the last is
"abstain") is scored by ``log(1 - p_abstain)``, a plain K-output classifier by its
log max-softmax. Both are log-probabilities computed in float64 from the logits, so
ranking by them equals ranking by ``1 - p_abstain`` (or max-softmax) without the ties
that ``1 - p`` suffers in floating point once ``p`` drops below 1e-16. The prediction is
the argmax over the first K outputs: an abstention model never predicts "abstain".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat.engine import predict_images


def confidence_scores(logits: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores float64, predictions int64)`` for logits of shape (N, K) or (N, K + 1)."""
    if logits.dim() != 2 or logits.shape[1] not in (num_classes, num_classes + 1):
        raise ValueError(f"logits of shape {tuple(logits.shape)} fit neither {num_classes} classes "
                         f"nor {num_classes} classes plus abstain")
    z = logits.double()
    classes = z[:, :num_classes]
    if z.shape[1] == num_classes + 1:
        # log(1 - p_abstain) = -log(1 + e^(z_abstain - logsumexp(z_classes))): no cancellation,
        # unlike logsumexp(z_classes) - logsumexp(z), which is exactly 0 once p_abstain < 1e-16.
        score = -F.softplus(z[:, num_classes] - torch.logsumexp(classes, dim=1))
    else:
        # log max-softmax = -log(1 + sum of e^(z_i - z_max) over the other classes), for the same reason.
        top = z.argmax(dim=1, keepdim=True)
        rest = (z - z.gather(1, top)).exp().scatter(1, top, 0.0).sum(dim=1)
        score = -torch.log1p(rest)
    return score, classes.argmax(dim=1)


def score_model(
    model: nn.Module, images: torch.Tensor, num_classes: int, batch_size: int = 1024,
    amp_dtype: torch.dtype | None = None, channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and predictions of ``model`` (eval mode) on uint8 ``images`` already on its
    device; ``num_classes`` is the dataset's K, so K + 1 outputs mean an abstention model."""
    logits = predict_images(model, images, batch_size, amp_dtype, channels_last)
    return confidence_scores(logits, num_classes)


def score_name(num_outputs: int, num_classes: int) -> str:
    """Which score :func:`confidence_scores` uses for a model with ``num_outputs``
    outputs, for result files: ``abstain`` (log(1 - p_abstain)) or ``max_softmax``."""
    return "abstain" if num_outputs == num_classes + 1 else "max_softmax"
