"""Projector and predictor MLPs (BYOL's shape: Linear-BN-ReLU-Linear)."""

from __future__ import annotations

from torch import nn

from sat.config import validate


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, name: str = "projector") -> nn.Sequential:
    hidden_dim = validate.positive_int(f"{name}_hidden_dim", hidden_dim)
    out_dim = validate.positive_int(f"{name}_dim", out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))
