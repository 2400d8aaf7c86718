"""Adversarial attacks for robustness evaluation.

An attack is a callable ``attack(model, x, y) -> x_adv`` on inputs in [0,1], with
the model in eval mode; it uses input gradients only and exposes ``eps`` (float,
[0,1] units) so results can record it."""

from sat.attacks.autoattack import AutoAttack
from sat.attacks.base import Attack, parse_eps, project, robust_accuracy
from sat.attacks.pgd import CW, FGSM, PGD, margin_loss

__all__ = ["Attack", "AutoAttack", "CW", "FGSM", "PGD", "margin_loss", "parse_eps", "project", "robust_accuracy"]
