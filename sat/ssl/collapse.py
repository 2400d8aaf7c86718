"""Collapse diagnostics of embeddings (N, d).

``normalized_std``: the per-dimension standard deviation of the L2-normalised embeddings,
averaged over dimensions, times sqrt(d): about 1 for embeddings spread over the sphere,
0 for a collapsed one (all images on one point; the diagnostic of SimSiam's paper).
``effective_rank``: exp of the entropy of the normalised singular values (Roy & Vetterli
2007, as RankMe uses it), from 1 (one direction) to min(N, d) (all used equally).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def normalized_std(z: torch.Tensor) -> float:
    u = F.normalize(z.float(), dim=1)
    return float(u.std(dim=0).mean() * math.sqrt(u.shape[1]))


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    s = torch.linalg.svdvals(z.float())
    if float(s.sum()) == 0.0:
        return 0.0
    p = s / s.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))
