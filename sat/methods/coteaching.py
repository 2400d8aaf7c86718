"""Co-teaching (Han et al., NeurIPS 2018, "Co-teaching: Robust Training of Deep Neural
Networks with Extremely Noisy Labels").

Two networks see the same batch. Each ranks the batch by its own per-sample
cross-entropy and keeps the ``R(T)`` fraction with the smallest losses; each network is
then trained on the samples its *peer* kept::

    loss = CE(model on peer's small-loss samples) + CE(peer on model's small-loss samples)

with forget rate ``1 - R(T)`` following the authors' code (github.com/bhanML/Co-teaching,
``main.py``): ``forget_rate ** exponent * T / (num_gradual - 1)`` for epochs
``T < num_gradual`` (a linear ramp from 0), ``forget_rate`` afterwards. The paper sets
the forget rate to the noise rate.

The second network is a submodule (``self.peer``) built by :meth:`attach_model` with the
same builder as the main model, so it is in ``state_dict()`` (checkpoints), moves with
``.to(device)``, and its parameters are ``self.parameters()``: the optimizer must be
built over ``model.parameters()`` and ``method.parameters()``. One optimizer over both
nets is the same as the paper's two optimizers with equal settings, because each term
of the loss depends on one network's parameters only (the selection is not
differentiable).

Each term is a mean over the kept samples. (The authors' ``loss_coteaching`` divides
that mean by the number kept once more, which only rescales the step size.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.base import PeerMethod


def forget_rate_schedule(epoch: int, forget_rate: float, num_gradual: int, exponent: float) -> float:
    """The fraction of each batch dropped at ``epoch`` (0-based), as ``rate_schedule``
    in the authors' code: ``linspace(0, forget_rate ** exponent, num_gradual)`` for the
    first ``num_gradual`` epochs, then ``forget_rate``."""
    if epoch >= num_gradual:
        return forget_rate
    if num_gradual == 1:
        return 0.0
    return forget_rate ** exponent * epoch / (num_gradual - 1)


def small_loss_indices(per_sample_loss: torch.Tensor, keep: int) -> torch.Tensor:
    """Positions of the ``keep`` smallest losses (ties broken by position)."""
    return torch.argsort(per_sample_loss.detach(), stable=True)[:keep]


def _local(positions: torch.Tensor, mine: torch.Tensor) -> torch.Tensor:
    """Of the global batch ``positions``, those of this process's samples (batch
    positions ``mine``, contiguous), as positions in its own shard, in the same order."""
    return positions[torch.isin(positions, mine)] - mine[0] if len(mine) else positions[:0]


@trusted("method")
class CoTeaching(PeerMethod):
    def __init__(self, forget_rate: float | None = None, num_gradual: int = 10, exponent: float = 1.0):
        super().__init__()
        if forget_rate is None:
            raise UserError(key="forget_rate", value=None, problem="is not set",
                            accepted="a number in [0, 1), usually the noise rate (the default ${noise.rate} is "
                                     "missing for this noise)")
        if not 0.0 <= forget_rate < 1.0:
            raise UserError(key="forget_rate", value=forget_rate, problem="is out of range",
                            accepted="0 <= {key} < 1")
        if num_gradual < 0:
            raise UserError(key="num_gradual", value=num_gradual, problem="is out of range", accepted="an integer >= 0")
        if exponent <= 0:
            raise UserError(key="exponent", value=exponent, problem="is out of range", accepted="{key} > 0")
        self.forget_rate, self.num_gradual, self.exponent = float(forget_rate), int(num_gradual), float(exponent)

    def forget_rate_at(self, epoch: int) -> float:
        return forget_rate_schedule(epoch, self.forget_rate, self.num_gradual, self.exponent)

    def exchange_loss(self, logits: torch.Tensor, peer_logits: torch.Tensor, targets: torch.Tensor,
                      epoch: int) -> torch.Tensor:
        """The co-teaching loss of a batch given both networks' logits."""
        logits, peer_logits = logits.float(), peer_logits.float()
        loss = F.cross_entropy(logits, targets, reduction="none")
        peer_loss = F.cross_entropy(peer_logits, targets, reduction="none")
        # The selection ranks the whole global batch (under DDP: every process's shard,
        # gathered), so a DDP run keeps the samples a single process would.
        size = self.global_batch.total(len(targets))
        # At least one sample, so a tiny last batch never gives an empty mean.
        keep = max(1, int((1.0 - self.forget_rate_at(epoch)) * size))
        batch_loss, batch_peer_loss = self.global_batch.gather(loss, peer_loss)
        mine = self.global_batch.local(torch.arange(size, device=loss.device))  # my samples' batch positions
        kept_by_model, kept_by_peer = (_local(small_loss_indices(batch_loss, keep), mine),
                                       _local(small_loss_indices(batch_peer_loss, keep), mine))
        # Each term is the mean over the kept samples of the global batch; this
        # process's part of it, as a mean over its own shard (as Method losses are).
        share = size / len(targets)
        return (loss[kept_by_peer].sum() / keep + peer_loss[kept_by_model].sum() / keep) * share

    def forward(self, model, x, y, index, epoch):
        if self.peer is None:
            raise RuntimeError("CoTeaching has no peer network: call method.attach_model(build) before training")
        self.peer.train(model.training)
        logits = model(x)
        return self.exchange_loss(logits, self.peer(x), y, epoch), logits

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        raise TypeError("co-teaching's loss needs both networks' logits: use forward(model, ...) or exchange_loss")

    def hparams(self):
        return {"forget_rate": self.forget_rate, "num_gradual": self.num_gradual, "exponent": self.exponent}
