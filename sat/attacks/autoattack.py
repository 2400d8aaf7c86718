"""Adapter over AutoAttack (Croce & Hein, 2020), an optional dependency.

The PyPI package ``pyautoattack`` installs the module ``pyautoattack``; a
``pip install git+https://github.com/fra31/auto-attack`` installs ``autoattack``.
Both are accepted. We run the package's attacks one at a time on the points still
robust, as AutoAttack itself does, so that the accuracy after each attack can be
reported and not just logged.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn

from sat.attacks.base import Attack, _predict, model_device, parse_eps
from sat.config import validate
from sat.errors import UserError

NORMS = ("Linf", "L2", "L1")
VERSIONS = ("standard", "plus", "rand", "custom")
ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
MISSING = "AutoAttack needs the optional extra: pip install -e '.[robust]'"


def _autoattack_class() -> type:
    for module in ("autoattack", "pyautoattack"):
        try:
            return importlib.import_module(module).AutoAttack
        except ImportError:
            continue
    raise UserError(MISSING)


class AutoAttack(Attack):
    """``AutoAttack(eps, norm, version)``; ``version="custom"`` runs ``attacks``.

    ``evaluate`` returns ``natural``, the accuracy left after each attack (keyed by
    its name, cumulative: attacks run in sequence on the remaining robust points),
    ``robust`` (the worst case over all attacks) and ``eps``."""

    def __init__(
        self,
        eps: float | str = 0.031,
        norm: str = "Linf",
        version: str = "standard",
        attacks: list[str] | None = None,
        seed: int = 0,
        verbose: bool = False,
    ):
        if norm not in NORMS:
            raise UserError(key="norm", value=norm, problem="is not supported", accepted=", ".join(NORMS))
        # L2/L1 radii may exceed 1 (e.g. L1 eps=12), so only L_inf is range-checked.
        self.eps = parse_eps(eps, "eps", upper=1.0 if norm == "Linf" else None)
        if version not in VERSIONS:
            raise UserError(key="version", value=version, problem="is not supported", accepted=", ".join(VERSIONS))
        attacks = list(attacks) if attacks else None
        if version == "custom" and not attacks:
            raise UserError(key="version", value=version, problem="needs {.attacks}, e.g. [apgd-ce, apgd-t]; got none")
        if version != "custom" and attacks:
            raise UserError(key="attacks", value=attacks, problem=f"are only used with {{.version}}=custom; got "
                                                                  f"{{.version}}={version!r}")
        for a in attacks or []:
            if a not in ATTACKS:
                raise UserError(key="attacks", problem=f"has {a!r}", accepted=", ".join(ATTACKS))
        self.norm, self.version, self.attacks, self.seed, self.verbose = norm, version, attacks, seed, verbose
        self._cls = _autoattack_class()  # fail at construction, not after training

    def _build(self, model: nn.Module, device: torch.device) -> Any:
        kwargs: dict[str, Any] = dict(norm=self.norm, eps=self.eps, version=self.version, seed=self.seed, device=device)
        if self.attacks:  # the two packages name this argument differently
            params = inspect.signature(self._cls.__init__).parameters
            kwargs["attacks" if "attacks" in params else "attacks_to_run"] = self.attacks
        aa = self._cls(model, **kwargs)
        aa.verbose = self.verbose
        return aa

    @staticmethod
    def _run_one(aa: Any, name: str, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
        aa.attacks_to_run = [name]
        params = inspect.signature(aa.run_standard_evaluation).parameters
        out = aa.run_standard_evaluation(x, y, **{"batch_size" if "batch_size" in params else "bs": batch_size})
        return out[0] if isinstance(out, tuple) else out  # pyautoattack returns (x_adv, y_adv)

    def _attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        device = model_device(model, x.device)
        aa = self._build(model, device)
        names = list(aa.attacks_to_run)

        def predict(xs: torch.Tensor) -> torch.Tensor:
            chunks = [xs[i : i + batch_size].to(device) for i in range(0, len(xs), batch_size)]
            return torch.cat([_predict(model, c).cpu() for c in chunks])

        x, y = x.detach(), y.detach()
        x_adv = x.clone()
        robust = predict(x) == y.cpu()
        result = {"natural": robust.float().mean().item()}
        for name in names:
            idx = robust.nonzero().squeeze(1)
            if len(idx):
                adv = self._run_one(aa, name, x[idx.to(x.device)], y[idx.to(y.device)], batch_size).to(x.device)
                fooled = predict(adv) != y.cpu()[idx]
                x_adv[idx[fooled].to(x.device)] = adv[fooled.to(x.device)]
                robust[idx[fooled]] = False
            result[name] = robust.float().mean().item()
        result["robust"] = robust.float().mean().item()
        result["eps"] = self.eps
        return x_adv, result

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._attack(model, x, y, batch_size=max(len(x), 1))[0]

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> dict[str, float]:
        """Natural, per-attack (cumulative) and worst-case robust accuracy on ``(x, y)``."""
        batch_size = validate.positive_int("batch_size", batch_size)
        was_training = model.training
        model.eval()
        try:
            return self._attack(model, x, y, batch_size)[1]
        finally:
            model.train(was_training)

    def __repr__(self) -> str:
        extra = f", attacks={self.attacks}" if self.attacks else ""
        return f"AutoAttack(eps={self.eps:.5g}, norm={self.norm!r}, version={self.version!r}{extra})"
