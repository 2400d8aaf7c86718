"""Several processes, one run: the process group and the few collectives a run needs
besides DDP's own gradient averaging.

The group is set up from the launcher's environment: torchrun's (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or, where those are
absent, srun's (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``, the first host of
``SLURM_JOB_NODELIST``), so ``srun`` or Hydra's submitit launcher with several tasks
per node starts a DDP run without torchrun. NCCL on CUDA (``LOCAL_RANK`` picks the
GPU), gloo on the CPU. Without either environment (or with one task in the srun step,
or in a batch script outside srun) a run is a single process and every collective here
is the identity.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from sat.errors import UserError
from sat.parallel.identity import launched_by

log = logging.getLogger("sat")


# --- where the processes come from ---------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """This process's place in a multi-process launch."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str  # "torchrun" or "slurm"
    init_method: str  # "env://" (torchrun's variables) or tcp://host:port (Slurm's)


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list (``gpu[07-09,12],cpu1`` -> ``gpu07``), as
    ``scontrol show hostnames`` gives it; parsed here where scontrol is unavailable."""
    try:
        hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               timeout=30, check=True).stdout.split()
        if hosts:
            return hosts[0]
    except (OSError, subprocess.SubprocessError):
        pass
    group = re.match(r"(?:[^,\[]|\[[^\]]*\])+", nodelist.strip())  # the first comma-separated group
    if group is None:
        raise UserError(f"SLURM_JOB_NODELIST={nodelist!r} is not a Slurm host list; accepted: e.g. gpu[01-02]")
    # each [a-b,c] range contributes its first value
    return re.sub(r"\[([^\],-]*)[^\]]*\]", r"\1", group.group(0))


def _int_env(environ: Mapping[str, str], key: str) -> int:
    try:
        return int(environ[key])
    except (KeyError, ValueError):
        raise UserError(f"{key}={environ.get(key)!r} in the environment is not an integer; the launcher sets it "
                        "(torchrun or srun)") from None


def launch_from_env(environ: Mapping[str, str] = os.environ) -> Launch | None:
    """The launch this process belongs to, or None for a single process (who launched
    it is decided by :func:`sat.parallel.identity.launched_by`, as everywhere)."""
    launcher = launched_by(environ)
    if launcher == "torchrun":
        local = _int_env(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else 0
        return Launch(_int_env(environ, "RANK"), _int_env(environ, "WORLD_SIZE"), local, "torchrun", "env://")
    if launcher is None:
        return None  # one task (the plain slurm launcher, or a batch script): a single-process run
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or ""
    host = environ.get("MASTER_ADDR") or first_host(nodelist)
    # a port every task derives alike from the job id (as submitit does), unless given
    port = _int_env(environ, "MASTER_PORT") if "MASTER_PORT" in environ else \
        20000 + _int_env(environ, "SLURM_JOB_ID") % 20000
    return Launch(_int_env(environ, "SLURM_PROCID"), _int_env(environ, "SLURM_STEP_NUM_TASKS"),
                  _int_env(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else 0, "slurm",
                  f"tcp://{host}:{port}")


def device_for(name: Any, launch: Launch) -> torch.device:
    """This process's device: ``auto``/``cuda`` -> ``cuda:LOCAL_RANK`` (``cuda:0`` where
    the launcher shows each task only its own GPU), ``cpu`` -> the CPU."""
    if name not in ("auto", "cuda", "cpu"):
        raise UserError(f"device={name!r} in a distributed run ({launch.world_size} processes); accepted: auto, cuda "
                        "(each process takes the GPU of its LOCAL_RANK), cpu")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 0:
        raise UserError(f"device={name!r} but CUDA is not available here; accepted: auto, cpu")
    if count == 1:
        return torch.device("cuda", 0)
    if launch.local_rank >= count:
        raise UserError(f"process with LOCAL_RANK={launch.local_rank} but {count} GPUs are visible; accepted: at most "
                        f"one process per GPU (torchrun --nproc_per_node <= {count}; Slurm tasks_per_node = "
                        "gpus_per_node)")
    return torch.device("cuda", launch.local_rank)


# --- the run's view of the group ------------------------------------------------------------


@dataclass
class Distributed:
    """A run's processes. ``Distributed()`` is the single process: rank 0 of 1, and
    every collective is the identity. Every collective must be called by all
    processes at the same point of the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # None: the single process resolves its own
    backend: str | None = None
    launcher: str | None = None
    # flags, objects and barriers go through gloo: CPU tensors, no device sync
    control: Any = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_rank0(self) -> bool:
        """Rank 0 alone writes the run folder (logs, TensorBoard, checkpoints, summary)."""
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "backend": self.backend, "launcher": self.launcher}

    def from_rank0(self, value: Any) -> Any:
        """Rank 0's ``value`` (a picklable object), on every process."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def all_values(self, value: Any) -> list[Any]:
        """Every process's ``value`` (a picklable object), in rank order, on every process."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value, group=self.control)
        return values

    def signal_agreement(self) -> Callable[[int], int] | None:
        """For :class:`sat.run.preemption.Preemption`: the processes' agreed signal (None in
        one process)."""
        return _SignalAgreement(self.control) if self.enabled else None

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(group=self.control)

    def settle(self, error: BaseException | None = None) -> None:
        """Where the processes' setups meet: each says whether it failed (``error``).
        A process that did not fail but finds that another did raises a one-line
        UserError carrying that failure, so none waits in a later collective for a
        process that has gone; a failed one goes on to raise its own error. Call it
        once at that point on every process, failed or not."""
        if not self.enabled:
            return
        mine = None if error is None else (str(error).splitlines()[0] if str(error) else type(error).__name__)
        errors: list[Any] = [None] * self.world_size
        dist.all_gather_object(errors, mine, group=self.control)
        failed = [(rank, msg) for rank, msg in enumerate(errors) if msg is not None]
        if error is None and failed:
            rank, msg = failed[0]
            raise UserError(f"{msg} (process {rank} of {self.world_size})")

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm's running statistics) on every process."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


class _SignalAgreement:
    """The largest of the processes' signal numbers (0: none), agreed one call late:
    each call starts a non-blocking all-reduce of this process's value and returns the
    result of the previous call's. Every process sees the same results in the same
    calls, so all stop at the same step (one step after the signal), and the reduction
    runs during the step instead of stalling it."""

    def __init__(self, group: Any):
        self.group = group
        self.pending: tuple[Any, torch.Tensor] | None = None

    def __call__(self, signum: int) -> int:
        agreed = 0
        if self.pending is not None:
            work, value = self.pending
            work.wait()
            agreed = int(value)
        value = torch.tensor([signum], dtype=torch.int64)
        self.pending = (dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.group, async_op=True), value)
        return agreed

    def close(self) -> None:
        """Wait for the reduction still in flight: a process group torn down under one
        aborts the process at exit ("terminate called without an active exception")."""
        if self.pending is not None:
            self.pending[0].wait()
            self.pending = None


SINGLE = Distributed()
_current: Distributed | None = None  # a process joins one group, kept for its later runs (multirun jobs)


def setup(device_name: Any, environ: Mapping[str, str] = os.environ) -> Distributed:
    """Join the launcher's process group (once per process), or return the single process."""
    global _current
    launch = launch_from_env(environ)
    if launch is None:
        return SINGLE
    device = device_for(device_name, launch)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if _current is not None:
        if _current.backend != backend:
            raise UserError(f"device={device_name!r} needs {backend}, but this process already runs a {_current.backend} "
                            f"group; accepted: the same device for every job of a multirun")
        return _current
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=launch.init_method, rank=launch.rank,
                                world_size=launch.world_size, device_id=device if device.type == "cuda" else None)
        atexit.register(_leave)
    control = dist.new_group(backend="gloo") if backend == "nccl" else None
    _current = Distributed(launch.rank, launch.world_size, launch.local_rank, device, backend, launch.launcher, control)
    if launch.rank != 0:  # one voice in the logs; the other processes report only trouble
        logging.getLogger("sat").setLevel(logging.WARNING)
    log.info("distributed: %d processes (%s, %s via %s)", launch.world_size, backend, device, launch.launcher)
    return _current


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
