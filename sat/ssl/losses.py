"""The self-supervised losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.config import validate


def cosine_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-row ``2 - 2 cos(p, z)`` (BYOL's normalised MSE, ``||p/|p| - z/|z|||^2``)."""
    return 2.0 - 2.0 * F.cosine_similarity(p.float(), z.float(), dim=1)


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-row ``-cos(p, z)`` (SimSiam's D)."""
    return -F.cosine_similarity(p.float(), z.float(), dim=1)


def check_temperature(temperature: float, name: str = "temperature") -> float:
    return validate.number(name, temperature, lo=0.0, lo_open=True)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, queries: torch.Tensor | None = None
            ) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2N embeddings of N pairs: for each one, cross-entropy of
    its pair among the other 2N - 1 by cosine similarity / temperature; mean over 2N.
    ``queries``: the pairs (positions in 0..N-1) whose two embeddings are the rows of the
    mean, every other embedding a key only (a DDP process's own samples in the gathered
    global batch); default all."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    rows = torch.arange(2 * n, device=z.device) if queries is None else torch.cat([queries, queries + n])
    sim = z[rows] @ z.T / temperature
    itself = torch.zeros_like(sim, dtype=torch.bool)
    itself[torch.arange(len(rows), device=z.device), rows] = True
    sim = sim.masked_fill(itself, float("-inf"))
    pair = (rows + n) % (2 * n)
    return F.cross_entropy(sim, pair)
