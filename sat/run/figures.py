"""What every figure of the project shares, so each is ready for a paper: the Okabe-Ito
colour-blind-safe palette, PNG (200 dpi) and PDF (editable TrueType fonts), and pyplot
on the file-only Agg backend (servers, CI)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sat.run.files import write_atomic

# Okabe & Ito (2008), without its yellow (#F0E442), which is unreadable as a line on white.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
LINESTYLES = ("-", "--", ":", "-.")
DPI = 200


def line_style(i: int) -> dict[str, Any]:
    """Colour i of the palette; past its end the colours repeat with another dash pattern."""
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "linestyle": LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)]}


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` and close the figure; returns both paths."""
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # its font subsetting logs every table at INFO
    plt = pyplot()
    paths = [Path(stem).with_suffix(".png"), Path(stem).with_suffix(".pdf")]
    with plt.rc_context({"pdf.fonttype": 42}):  # through the one writer: atomic, never through a link
        write_atomic(paths[0], lambda f: fig.savefig(f, format="png", dpi=DPI))
        write_atomic(paths[1], lambda f: fig.savefig(f, format="pdf"))
    plt.close(fig)
    return paths
