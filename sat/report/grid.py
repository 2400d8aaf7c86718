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


def expand_grid(sweeper_params: dict[str, Any], task_overrides: list[str]) -> list[list[str]]:
    """The jobs (each a list of ``key=value`` overrides) the basic sweeper makes of its
    ``params`` and the command line's overrides, in Hydra's order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    lines = [f"{k}={v}" for k, v in sweeper_params.items()] + list(task_overrides)  # as BasicSweeper.sweep does
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
        (jobs,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    except HydraException as e:
        raise UserError(f"cannot expand the sweep {lines}: {e}") from None
    return [list(job) for job in jobs]


def sweep_jobs(sweep_root: Path) -> list[list[str]] | None:
    """The jobs of the sweep at ``sweep_root`` (read from the ``multirun.yaml`` Hydra
    writes there); None when another sweeper (Optuna, ...) chose them as it went."""
    hydra = OmegaConf.load(Path(sweep_root) / "multirun.yaml").hydra
    if not str(OmegaConf.select(hydra, "sweeper._target_", default="")).endswith("BasicSweeper"):
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
        have = {frozenset(overrides) for path, overrides in started if sweep_root in path.parents}
        missing += [(sweep_root, job) for job in jobs if frozenset(job) not in have]
    return missing
