"""Weighted kNN classification of features, the protocol of the MoCo CIFAR demo and
lightly's benchmarks: cosine similarity to a bank of training features, the ``k``
nearest vote for their labels with weight ``exp(similarity / temperature)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sat.config import validate


def check_knn(k: int, temperature: float, names: tuple[str, str] = ("k", "temperature")) -> tuple[int, float]:
    """The neighbours and temperature of a kNN classifier, checked; ``names``: the
    arguments they came in as (a method's ``knn_k``, ``knn_temperature``)."""
    k = validate.number(names[0], k, lo=1, integer=True)
    temperature = validate.number(names[1], temperature, lo=0.0, lo_open=True)
    return k, temperature


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
                k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Predicted labels of ``queries`` (M, d) by their ``k`` (at most the bank's size)
    nearest ``bank`` rows (N, d)."""
    k, temperature = check_knn(k, temperature)
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, len(bank))
    preds = []
    for start in range(0, len(queries), chunk):
        q = F.normalize(queries[start: start + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=q.device)
        votes.scatter_add_(1, bank_labels[idx], (sim / temperature).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=queries.device)


def knn_accuracy(bank, bank_labels, queries, query_labels, num_classes, k=200, temperature=0.1) -> float:
    pred = knn_predict(bank, bank_labels, queries, num_classes, k, temperature)
    return float((pred == query_labels).float().mean()) if len(query_labels) else float("nan")
