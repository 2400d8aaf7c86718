"""The jobs of a sweep, as Hydra's basic sweeper made them, to name the ones that have
no run folder yet ("not started").

Hydra expands the grid itself (its override parser and ``BasicSweeper.split_arguments``),
so ``range(1,65)``, ``a,b`` and a command-line value replacing a declared one mean here
what they meant to the sweeper. Hydra is imported only here: the rest of the report
reads plain files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sat.errors import UserError
from sat.report.settings import load_stored_config

# More jobs than any sweep runs: a multirun.yaml declaring more (``seed=range(0,30000000)``)
# is refused before its grid is made, rather than taking the machine's memory.
MAX_JOBS = 100_000
# Sweepers whose jobs are the basic sweeper's grid (sat's own then leaves out of each job
# the method keys its method does not take: hydra_plugins/sat_sweeper).
GRID_SWEEPERS = ("BasicSweeper", "SatSweeper")


def expand_grid(sweeper_params: dict[str, Any], task_overrides: list[str]) -> list[list[str]]:
    """The jobs (each a list of ``key=value`` overrides) the basic sweeper makes of its
    ``params`` and the command line's overrides, in Hydra's order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    lines = [f"{k}={v}" for k, v in sweeper_params.items()] + list(task_overrides)  # as BasicSweeper.sweep does
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
        size = grid_size(overrides)
        if size > MAX_JOBS:
            raise UserError(f"the sweep {lines} declares {size:,} jobs, more than the report reads ({MAX_JOBS:,}); "
                            "accepted: a sweep of fewer jobs (is its multirun.yaml the one Hydra wrote?)")
        (jobs,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    except HydraException as e:
        raise UserError(f"cannot expand the sweep {lines}: {e}") from None
    return [list(job) for job in jobs]


def grid_size(overrides: list[Any]) -> int:
    """How many jobs the basic sweeper would make of parsed ``overrides``, counted
    without making them (a range is its length, not its list)."""
    import math

    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    size = 1
    for override in overrides:
        value = override.value() if override.is_sweep_override() else None
        if isinstance(value, RangeSweep) and value.start is not None and value.stop is not None:
            step = value.step or 1
            size *= max(0, math.ceil((value.stop - value.start) / step))
        elif isinstance(value, ChoiceSweep):
            size *= len(value.list)
    return size


def sweep_jobs(sweep_root: Path) -> list[list[str]] | None:
    """The jobs of the sweep at ``sweep_root`` (read from the ``multirun.yaml`` Hydra
    writes there); None when another sweeper (Optuna, ...) chose them as it went."""
    hydra = load_stored_config(Path(sweep_root) / "multirun.yaml").hydra
    if not str(OmegaConf.select(hydra, "sweeper._target_", default="")).endswith(GRID_SWEEPERS):
        return None
    params = OmegaConf.select(hydra, "sweeper.params", default=None)
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    return expand_grid(params, [str(o) for o in hydra.overrides.task])


def not_started(root: Path, started: list[tuple[Path, tuple[str, ...]]]) -> list[tuple[Path, list[str]]]:
    """``(sweep root, job overrides)`` of every job of a sweep below ``root`` without a
    run folder. ``started``: ``(run folder, its overrides)`` of the runs found."""
    missing = []
    for manifest in sorted(Path(root).rglob("multirun.yaml")):
        sweep_root = manifest.parent
        jobs = sweep_jobs(sweep_root)
        if jobs is None:
            continue
        have = [frozenset(overrides) for path, overrides in started if sweep_root in path.parents]
        missing += [(sweep_root, job) for job in jobs if not any(ran_as(job, run) for run in have)]
    return missing


def ran_as(job: list[str], run: frozenset[str]) -> bool:
    """Whether a run with overrides ``run`` is the grid's ``job``: the same overrides, but
    for method keys the sweeper left out because the run's method does not take them."""
    left_out = set(job) - run
    return run <= set(job) and all(o.startswith("method.") for o in left_out)
