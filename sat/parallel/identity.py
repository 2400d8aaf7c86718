"""Which process of a run this is: the one answer to "is this rank 0", read from the
launcher's environment (torchrun's ``RANK``/``WORLD_SIZE``, or srun's ``SLURM_PROCID``
with more than one task in the step). Rank 0 alone writes a run's folder, prints hints
and removes a refused run's folder; every other process only reads."""

from __future__ import annotations

import os
from collections.abc import Mapping


def _int(environ: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(environ.get(key, default))
    except ValueError:
        return default


def launched_by(environ: Mapping[str, str] = os.environ) -> str | None:
    """``torchrun`` (any env:// launcher), ``slurm`` (srun with several tasks in the step),
    or None for a single process (a batch script outside srun sees SLURM_PROCID=0 too)."""
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return "torchrun"
    if "SLURM_PROCID" in environ and _int(environ, "SLURM_STEP_NUM_TASKS", 1) > 1:
        return "slurm"
    return None


def process_rank(environ: Mapping[str, str] = os.environ) -> int:
    """This process's rank in its launch (0 for a single process)."""
    launcher = launched_by(environ)
    if launcher == "torchrun":
        return _int(environ, "RANK", 0)
    if launcher == "slurm":
        return _int(environ, "SLURM_PROCID", 0)
    return 0


def is_rank0(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process writes the run folder (and alone says how to continue it)."""
    return process_rank(environ) == 0
