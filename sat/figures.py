"""Shared figure settings: a colour-blind-safe palette (Okabe & Ito) and pyplot on the
file-only Agg backend (servers, CI)."""

from __future__ import annotations

from typing import Any

# Okabe-Ito, without yellow (hard to see on white)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000")


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
