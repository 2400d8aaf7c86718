"""Two processes on this machine: two forked gloo processes, each writing what it measured
(the harness of the tests that compare a DDP step with one process seeing the whole
batch), and the real ``torchrun`` entry with two workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import ROOT


def torchrun(args: list[str], cwd: Path, check: bool = True, env_extra: dict | None = None,
             **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    """``python -m torch.distributed.run --nproc_per_node=2 --standalone train.py ARGS``."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(ROOT / "train.py"),
           *args]
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun train.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def rank1_pid(torchrun_pid: int) -> int:
    """The pid of torchrun's worker with RANK=1."""
    for pid in subprocess.run(["pgrep", "-P", str(torchrun_pid)], capture_output=True, text=True).stdout.split():
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"RANK=1" in env:
            return int(pid)
    raise AssertionError("no worker with RANK=1")


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
