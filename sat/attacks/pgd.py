"""L_inf gradient-sign attacks: PGD (Madry et al.), FGSM, and CW (PGD on the
Carlini-Wagner margin loss).

The step is relative to eps by default (``rel_stepsize``, foolbox's name: the step as a
fraction of eps), so a sweep over eps attacks every radius as hard as the paper's setting
attacks its own: PGD-20's 0.003 at eps 0.031 is ``rel_stepsize: 0.003/0.031``, exactly
0.003 at that eps. An absolute ``step_size``, when given, wins. A step too small for the
attack to reach the ball's edge in its steps (``steps * step < eps``) is said in one line."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from sat.attacks.base import Attack, input_grad, parse_eps, project
from sat.config import validate
from sat.errors import UserError

log = logging.getLogger("sat")

LOSSES = ("ce", "margin")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample CW margin ``max_{j != y} z_j - z_y`` (positive = misclassified)."""
    z = logits.float()
    z_y = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf"))
    return others.max(dim=1).values - z_y


def _loss(name: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Summed, not averaged, so a sample's gradient does not depend on the batch size.
    if name == "ce":
        return F.cross_entropy(logits.float(), y, reduction="sum")
    return margin_loss(logits, y).sum()


class PGD(Attack):
    """Projected gradient ascent on ``loss`` with signed steps of ``step_size`` (absolute)
    or, without one, of ``rel_stepsize * eps``.

    ``random_start`` draws the start uniformly from the eps-ball. With ``restarts``
    > 1, each sample keeps the first restart's example that fools the model, else the
    last restart's."""

    def __init__(
        self,
        eps: float | str = 0.031,
        step_size: float | str | None = None,
        steps: int = 10,
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        rel_stepsize: float | str | None = "0.007/0.031",
    ):
        self.eps = parse_eps(eps, "eps")
        if step_size is None and rel_stepsize is None:
            raise UserError(key="step_size", value=None, problem="and {.rel_stepsize}=None give no step",
                            accepted="{.rel_stepsize} (a fraction of eps, e.g. 0.003/0.031) or an absolute {key}")
        self.rel_stepsize = None if rel_stepsize is None else parse_eps(rel_stepsize, "rel_stepsize", upper=None)
        self.step_size = parse_eps(step_size, "step_size") if step_size is not None \
            else self.rel_stepsize * self.eps
        self.steps = validate.number("steps", steps, lo=0, integer=True)
        self.restarts = validate.positive_int("restarts", restarts)
        self.random_start = validate.flag("random_start", random_start)
        self.loss = validate.choice("loss", loss, LOSSES)
        if self.steps * self.step_size < self.eps * (1 - 1e-9):
            log.warning("attack: steps=%d x step_size=%.4g = %.4g < eps=%.4g: the attack cannot reach the edge of its "
                        "eps-ball from the clean image (weaker than its eps says); accepted: more steps, a larger "
                        "step_size, or the step relative to eps (rel_stepsize)", self.steps, self.step_size,
                        self.steps * self.step_size, self.eps)

    def _run_once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = x.detach().clone()
        if self.random_start:
            x_adv = project(x_adv + torch.empty_like(x_adv).uniform_(-self.eps, self.eps), x, self.eps)
        for _ in range(self.steps):
            grad = input_grad(lambda xa: _loss(self.loss, model(xa), y), x_adv)
            x_adv = project(x_adv + self.step_size * grad.sign(), x, self.eps)
        return x_adv

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        if self.restarts == 1:  # no need to check which samples are fooled
            return self._run_once(model, x, y)
        best = x.clone()
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            x_adv = self._run_once(model, x, y)
            with torch.no_grad():
                fooled = model(x_adv).argmax(dim=1) != y
            take = ~found  # not fooled yet: take this restart's (first success, or latest)
            best[take] = x_adv[take]
            found |= fooled
        return best

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eps={self.eps:.5g}, step_size={self.step_size:.5g}, steps={self.steps}, "
            f"random_start={self.random_start}, restarts={self.restarts}, loss={self.loss!r})"
        )


class FGSM(PGD):
    """One signed step of size eps from the clean input (Goodfellow et al.)."""

    def __init__(self, eps: float | str = 0.031):
        super().__init__(eps=eps, steps=1, random_start=False, restarts=1, loss="ce", rel_stepsize=1.0)


class CW(PGD):
    """PGD on the CW margin loss (the "CW_inf" evaluation of the TRADES/SAT papers)."""

    def __init__(
        self,
        eps: float | str = 0.031,
        step_size: float | str | None = None,
        steps: int = 20,
        random_start: bool = True,
        restarts: int = 1,
        rel_stepsize: float | str | None = "0.003/0.031",
    ):
        super().__init__(eps, step_size, steps, random_start, restarts, loss="margin", rel_stepsize=rel_stepsize)
