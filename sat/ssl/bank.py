"""SSL-SAT's per-image target bank: one unit vector per training image in projection space.

When image ``i`` is in a batch with the target branch's embedding ``z_i`` (unit norm)::

    first visit (init=first):  t_i <- z_i
    afterwards:                t_i <- normalize(alpha * t_i + (1 - alpha) * z_i)

With ``init=random`` every t_i starts as a random unit vector and the first visit is
an ordinary update. The bank is method state: buffers on the training device, indexed
by the sample's position in the training split, saved in checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat.config import validate

INITS = ("first", "random")


class TargetBank(nn.Module):
    def __init__(self, alpha: float = 0.9, init: str = "first"):
        super().__init__()
        self.alpha = validate.number("alpha", alpha, lo=0.0, hi=1.0, hi_open=True)
        self.init = validate.choice("init", init, INITS)
        self.register_buffer("targets", torch.empty(0, 0))
        self.register_buffer("visited", torch.empty(0, dtype=torch.bool))

    def allocate(self, num_samples: int, dim: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> None:
        """Room for ``num_samples`` targets of ``dim`` (before ``load_state_dict``)."""
        if self.init == "random":
            t = F.normalize(torch.randn(num_samples, dim, generator=generator), dim=1)
        else:
            t = torch.zeros(num_samples, dim)
        self.targets = t.to(device)
        self.visited = torch.full((num_samples,), self.init == "random", dtype=torch.bool, device=device)

    @torch.no_grad()
    def update(self, index: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Move the targets of samples ``index`` (distinct) towards embeddings ``z``;
        returns the new targets, one row per sample."""
        z = F.normalize(z.float(), dim=1)
        old = self.targets[index]
        moved = F.normalize(self.alpha * old + (1.0 - self.alpha) * z, dim=1)
        t = torch.where(self.visited[index, None], moved, z)
        self.targets[index] = t
        self.visited[index] = True
        return t
