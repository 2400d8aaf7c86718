"""TRADES (Zhang et al., ICML 2019) and, with ``natural=SelfAdaptiveTraining``,
TRADES+SAT (Huang et al., NeurIPS 2020).

    loss = natural(f(x), y) + beta / B * sum_i KL(softmax f(x_i) || softmax f(x_adv_i))

x_adv ascends that KL from ``x + 0.001 * N(0, 1)`` by ``steps`` signed steps, each
projected onto the L_inf ``epsilon``-ball and [0,1]. Unlike the reference code, the
clean probabilities are computed once per batch (they do not change during the
attack) and the attack takes input gradients only, which makes a step much cheaper
(see benchmarks/trades_step.py) without changing the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat.attacks.base import input_grad, parse_eps, project
from sat.config import validate
from sat.config.trust import trusted
from sat.errors import UserError
from sat.methods.base import Method
from sat.methods.ce import CrossEntropy


def kl_sum(logits_q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """sum over the batch of KL(p || softmax(logits_q)), in float32 (logits may be bf16)."""
    return F.kl_div(F.log_softmax(logits_q.float(), dim=1), p, reduction="sum")


@trusted("method", "sat.methods.TRADES")
class TRADES(Method):
    def __init__(
        self,
        natural: Method | None = None,
        beta: float = 6.0,
        epsilon: float | str = 0.031,
        step_size: float | str = 0.007,
        steps: int = 10,
    ):
        super().__init__()
        beta = validate.number("beta", beta, lo=0.0)
        steps = validate.number("steps", steps, lo=0, integer=True)
        epsilon = parse_eps(epsilon, "epsilon")  # also accepts "8/255"
        step_size = parse_eps(step_size, "step_size")
        # A submodule, so natural's per-sample state (SAT targets) is in our state_dict.
        self.natural = natural if natural is not None else CrossEntropy()
        if not isinstance(self.natural, Method):
            raise UserError(key="natural", value=type(self.natural).__name__, problem="is not a training method",
                            accepted="a sat.methods.base.Method such as sat.methods.ce.CrossEntropy or "
                                     "sat.methods.sat.SelfAdaptiveTraining")
        self.beta, self.epsilon, self.step_size, self.steps = float(beta), float(epsilon), float(step_size), int(steps)

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        with validate.argument("natural"):
            self.natural.setup(labels, num_classes)

    def schedule(self, epochs: int) -> None:
        with validate.argument("natural"):  # natural's refusals name natural.<its argument>
            self.natural.schedule(epochs)

    def phase_starts(self) -> dict[str, int]:
        return {f"natural.{key}": start for key, start in self.natural.phase_starts().items()}

    def phase_never_starts(self, key: str, start: int, epochs: int) -> UserError:
        return self.natural.phase_never_starts(key.removeprefix("natural."), start, epochs).within("natural")

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        with validate.argument("natural"):
            return self.natural.end_epoch(epoch, metrics)

    def soft_labels(self) -> torch.Tensor | None:
        return self.natural.soft_labels()

    def networks(self) -> list[nn.Module]:
        return self.natural.networks()

    def loss(self, logits, targets, index, epoch) -> torch.Tensor:
        """The natural part only (the KL term needs the model; see :meth:`forward`)."""
        return self.natural.loss(logits, targets, index, epoch)

    def perturb(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """TRADES' inner maximisation; ``model`` in eval mode. Returns a detached x_adv."""
        x = x.detach()
        with torch.no_grad():
            p = F.softmax(model(x).float(), dim=1)  # fixed during the attack: compute once
        # The reference leaves the noisy start unprojected; projecting it only matters
        # when steps == 0 or epsilon < 0.001, and keeps x_adv a valid image.
        x_adv = project(x + 0.001 * self.global_batch.randn_like(x), x, self.epsilon)
        for _ in range(self.steps):
            grad = input_grad(lambda xa: kl_sum(model(xa), p), x_adv)
            x_adv = project(x_adv + self.step_size * grad.sign(), x, self.epsilon)
        return x_adv

    def forward(self, model, x, y, index, epoch) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = model.training
        model.eval()  # BN uses running stats and dropout is off while attacking
        try:
            x_adv = self.perturb(model, x)
        finally:
            model.train(was_training)
        logits, logits_adv = model(x), model(x_adv)
        # Gradients flow through both the clean and the adversarial probabilities.
        robust = kl_sum(logits_adv, F.softmax(logits.float(), dim=1)) / x.shape[0]
        return self.natural.loss(logits, y, index, epoch) + self.beta * robust, logits

    def hparams(self):
        own = {"beta": self.beta, "epsilon": self.epsilon, "step_size": self.step_size, "steps": self.steps}
        return {**own, **{f"natural.{k}": v for k, v in self.natural.hparams().items()}}
