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


def side_by_side(model, method, group, sizes: list[int]):
    """A DDP step over ``model`` and ``method`` (this process's shard of a global batch of
    ``sizes``) and a single-process copy made now, each with its own SGD (lr 0.5):
    ``(step, opt, ref_model, ref_method, ref_opt)``."""
    import copy

    import torch

    from sat.parallel import ShardedBatch
    from sat.tasks.train.ddp import DataParallelStep

    ref_model, ref_method = copy.deepcopy(model), copy.deepcopy(method)
    step = DataParallelStep(model, method, group, ShardedBatch(group, lambda: sizes))
    opt = torch.optim.SGD([*model.parameters(), *method.parameters()], lr=0.5)
    ref_opt = torch.optim.SGD([*ref_model.parameters(), *ref_method.parameters()], lr=0.5)
    return step, opt, ref_model, ref_method, ref_opt


def largest_gap(model, method, ref_model, ref_method) -> float:
    """The largest difference between the two copies' parameters (model and method)."""
    pairs = zip([*model.parameters(), *method.parameters()], [*ref_model.parameters(), *ref_method.parameters()])
    return max(float((a - b).abs().max()) for a, b in pairs)
