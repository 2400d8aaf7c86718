"""Two forked gloo processes on this machine, each writing what it measured: the harness of
the tests that compare a DDP step with one process seeing the whole batch."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path


def run_two(worker: Callable[[int, int, str], None], folder: Path) -> list[dict]:
    """``worker(rank, port, out)`` in two forked processes (the children need not import
    torch again); each writes its JSON to ``f"{out}.{rank}"``. Returns both, rank order."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(folder / "gaps")
    mp.start_processes(worker, args=(port, out), nprocs=2, start_method="fork")
    return [json.loads(Path(f"{out}.{rank}").read_text()) for rank in (0, 1)]
