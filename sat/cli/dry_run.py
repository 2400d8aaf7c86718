"""``dry_run=true``: a command checked the way its run would check it, stopping before any
data is read, with nothing written::

    python train.py experiment=quickstart dry_run=true
    python train.py -m experiment=dd_resnet18_cifar10 method=ce,sat hydra/launcher=slurm dry_run=true

The entry point hands such a command here instead of to Hydra's run. Hydra's own loader
composes the config; a sweep (``-m``) is expanded into its jobs as the basic sweeper makes
them (the command line's sweeps and ``hydra.sweeper.params``), each named by the folder it
would write. Every job goes through its task's ``check`` (:func:`sat.tasks.train.check`,
:func:`sat.tasks.evaluate.check`, :func:`sat.tasks.attack.check`): every value, every
object the config names (the networks on the meta device), the checkpoints it reads and
the memory it needs. No folder is made and no launcher started (a Slurm sweep submits
nothing). It prints one line per job, a refusal as its one-line error, and exits with
status 0 when every job passes, 2 when any is refused.

A sweep's jobs that select the same config-group options share one composition: Hydra
composes the defaults list once and applies each job's value overrides to a copy with its
own function, which is what it does inside every composition (``test_dry_run`` checks the
result equals Hydra's own composition of each job).
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sat.errors import UserError

KEY = "dry_run"
# the task each primary config runs: its dry-run check
CHECKS = {"train": "sat.tasks.train", "evaluate": "sat.tasks.evaluate", "attack": "sat.tasks.attack"}


@dataclass
class Job:
    """One job of a checked command: where it would write, and what it would run or why
    it is refused."""

    num: int | None  # its number in the sweep (None: a single run)
    overrides: list[str]
    folder: str
    line: str = ""
    refusal: UserError | None = None


@dataclass
class Plan:
    """What a command would run: its jobs, checked."""

    config_name: str
    multirun: bool
    jobs: list[Job] = field(default_factory=list)
    folder: str = ""  # the sweep folder (a sweep) or the run folder
    launcher: str = ""  # the launcher a sweep would start (``hydra/launcher=`` option)
    note: str = ""

    @property
    def refused(self) -> list[Job]:
        return [j for j in self.jobs if j.refusal is not None]


def _arguments(argv: list[str]) -> Any:
    from hydra._internal.utils import get_args_parser

    try:
        return get_args_parser().parse_args(argv)
    except SystemExit:  # argparse's own message is printed; Hydra would do the same
        raise UserError(f"cannot read the command line {' '.join(argv)}; accepted: key=value overrides, -m") from None


def requested(argv: list[str]) -> bool:
    """Does the command line ask for a dry run (``dry_run=true`` among its overrides, and
    no Hydra information flag such as ``--cfg`` or ``--help``)?"""
    if not any(a.lstrip("+").startswith(f"{KEY}=") for a in argv):
        return False
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args = _arguments(argv)
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return False
    try:
        parsed = [o for o in OverridesParser.create().parse_overrides(args.overrides) if o.key_or_group == KEY]
    except HydraException:  # a malformed override: the normal path reports it
        return False
    if any(o.is_sweep_override() for o in parsed):
        raise UserError(f"{KEY} cannot be swept; accepted: {KEY}=true (checks every job of the sweep)")
    return any(o.value() is True for o in parsed)


# Compositions of a set of group choices, kept for the jobs (and the later sweeps of this
# process: the docs' commands) that choose the same; by config search path and overrides.
_BASES: dict[tuple[str, str, tuple[str, ...]], DictConfig] = {}


class _Composer:
    """A sweep's job configs, as Hydra's launcher composes them
    (``config_loader.load_sweep_config``), one Hydra composition per set of group choices."""

    def __init__(self, hydra: Any, master: DictConfig):
        self.loader, self.master = hydra.config_loader, master
        self.config_name = master.hydra.job.config_name
        self.hydra_overrides = [str(o) for o in master.hydra.overrides.hydra]

    def job(self, overrides: list[str], num: int) -> DictConfig:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.types import RunMode

        parsed = OverridesParser.create().parse_overrides(overrides)
        repo = self.loader.repository
        # as Hydra's defaults list splits them: a group choice selects files, the rest are values
        chosen = [o for o in parsed if repo.group_exists(o.key_or_group) and not isinstance(o.value(), dict)]
        values = [o for o in parsed if o not in chosen]
        lines = self.hydra_overrides + [o.input_line for o in chosen]
        key = (str(self.loader.get_search_path()), self.config_name, tuple(lines))
        if key not in _BASES:
            if len(_BASES) >= 64:
                _BASES.pop(next(iter(_BASES)))
            _BASES[key] = self.loader.load_configuration(config_name=self.config_name, overrides=lines,
                                                         run_mode=RunMode.RUN)
        cfg = copy.deepcopy(_BASES[key])
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in parsed]
            dirname = cfg.hydra.job.config.override_dirname
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=parsed, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)
            cfg.hydra.job.id = num
            cfg.hydra.job.num = num
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)  # ${now:...} as the sweep resolved it
        return cfg


def _set_job(cfg: DictConfig, folder: str) -> None:
    """Hydra's view of the job, as its ``run_job`` sets it before calling a task
    (``${hydra:runtime.output_dir}``, the group choices), without making the folder."""
    from hydra.core.hydra_config import HydraConfig

    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = os.path.abspath(folder)
    HydraConfig.instance().set_config(cfg)


def _check(task: Any, cfg: DictConfig, job: Job) -> None:
    from sat.cli import _user_error_in
    from sat.config import keys

    try:
        keys.check_keys(cfg)
        job.line = task.check(cfg)
    except Exception as e:
        refusal = _user_error_in(e)
        if refusal is None:
            raise
        job.refusal = refusal


def _launcher(cfg: DictConfig) -> str:
    """The launcher a sweep would start, its plugin importable (``hydra/launcher=slurm``
    without submitit installed is refused here, not after the sweep is written)."""
    from hydra.utils import get_class

    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default=""))
    choice = str(OmegaConf.select(cfg, "hydra.runtime.choices", default={}).get("hydra/launcher", "basic"))
    try:
        get_class(target)
    except Exception as e:  # noqa: BLE001  (an uninstalled plugin: ImportError inside Hydra's own wrapper)
        raise UserError(f"hydra/launcher={choice}: its plugin {target} cannot be imported ({str(e).splitlines()[0]}); "
                        "accepted: pip install -e '.[slurm]' for slurm and slurm_ddp, or another hydra/launcher") from None
    return choice


def _compose(hydra: Any, config_name: str, overrides: list[str], multirun: bool) -> DictConfig:
    """The command's config, composed as Hydra's ``run`` or ``multirun`` composes it: ``-m``
    (or ``hydra.mode: MULTIRUN`` in the config) sweeps; otherwise one run (Hydra reads the
    mode from a composition of its own first; here the run's composition says it, and only
    a config that sweeps without ``-m`` is composed twice)."""
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode

    if not multirun:
        try:
            cfg = hydra.compose_config(config_name=config_name, overrides=overrides, run_mode=RunMode.RUN)
        except ConfigCompositionException:
            if hydra.get_mode(config_name=config_name, overrides=overrides) != RunMode.MULTIRUN:
                raise
        else:
            if cfg.hydra.mode != RunMode.MULTIRUN:
                with read_write(cfg.hydra), open_dict(cfg.hydra):
                    cfg.hydra.mode = RunMode.RUN  # as Hydra's run sets it (it also adds hydra.mode=RUN to the overrides)
                    cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
                return cfg
    return hydra.compose_config(config_name=config_name, overrides=[*overrides, "hydra.mode=MULTIRUN"],
                                run_mode=RunMode.MULTIRUN)


def _jobs(hydra: Any, master: DictConfig) -> tuple[list[list[str]], str]:
    """The jobs (each its overrides) the sweep's sweeper would launch, and a note where it
    cannot say: the basic sweeper (or a subclass: its own ``split_arguments``) makes its
    grid of the command line's sweeps and ``hydra.sweeper.params``, as its ``sweep`` does;
    a sweeper that chooses its jobs as it runs (Optuna, ...) gets one job checked, the
    command's fixed settings."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.utils import HydraContext
    from hydra.errors import HydraException
    from hydra.utils import get_class

    from sat.report.grid import MAX_JOBS, grid_size

    target = str(OmegaConf.select(master, "hydra.sweeper._target_", default=""))
    task = [str(o) for o in master.hydra.overrides.task]
    sweeper_class = get_class(target)
    if not issubclass(sweeper_class, BasicSweeper):
        fixed = [o.input_line for o in OverridesParser.create().parse_overrides(task) if not o.is_sweep_override()]
        return [fixed], (f"the sweeper {target.rsplit('.', 1)[-1]} chooses its jobs as it runs: checked one job, the "
                         "command's fixed settings with the sweeper's defaults")
    params = OmegaConf.select(master, "hydra.sweeper.params", default=None)
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    lines = [f"{k}={v}" for k, v in params.items()] + task  # as BasicSweeper.sweep does
    try:
        overrides = OverridesParser.create(config_loader=hydra.config_loader).parse_overrides(lines)
        if grid_size(overrides) > MAX_JOBS:
            raise UserError(f"the sweep {lines} makes {grid_size(overrides):,} jobs, more than a dry run checks "
                            f"({MAX_JOBS:,}); accepted: a sweep of fewer jobs")
        sweeper = sweeper_class(max_batch_size=None, params=None)
        sweeper.config, sweeper.hydra_context = master, HydraContext(config_loader=hydra.config_loader, callbacks=None)
        batches = sweeper.split_arguments(overrides, None)
    except HydraException as e:
        raise UserError(f"cannot expand the sweep {lines}: {e}") from None
    return [list(job) for batch in batches for job in batch], ""


def check_command(conf_dir: str | Path, config_name: str, argv: list[str],
                  only: Callable[[list[list[str]]], set[int]] | None = None) -> Plan:
    """Every job of the command line ``argv`` (an entry point's arguments, ``-m`` for a
    sweep) of the primary config ``config_name`` in ``conf_dir``, checked; ``only`` (given
    the sweep's jobs, the numbers of those to check) checks fewer."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sat.cli import bad_input
    from sat.config.keys import composition_error

    args = _arguments(argv)
    config_name = args.config_name or config_name
    task = importlib.import_module(CHECKS[config_name])
    previous = HydraConfig.instance().cfg
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3",
                                   job_name=config_name):
            hydra = GlobalHydra.instance().hydra
            try:
                master = _compose(hydra, config_name, list(args.overrides), args.multirun)
            except Exception as e:
                error = bad_input(e)
                if error is None:
                    raise
                raise error from None
            plan = Plan(config_name, str(master.hydra.mode) == str(RunMode.MULTIRUN))
            if not plan.multirun:
                plan.folder = str(master.hydra.run.dir)
                job = Job(None, [str(o) for o in master.hydra.overrides.task], plan.folder)
                _set_job(master, job.folder)
                _check(task, master, job)
                plan.jobs.append(job)
                return plan
            plan.launcher = _launcher(master)
            plan.folder = str(master.hydra.sweep.dir)
            grid, plan.note = _jobs(hydra, master)
            composer = _Composer(hydra, master)
            chosen = only(grid) if only is not None else range(len(grid))
            for num, job_overrides in enumerate(grid):
                if num not in chosen:
                    continue
                try:
                    cfg = composer.job(job_overrides, num)
                    folder = os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))
                except Exception as e:
                    refusal = composition_error(e) or bad_input(e)
                    if refusal is None:
                        raise
                    plan.jobs.append(Job(num, job_overrides, "?", refusal=refusal))
                    continue
                job = Job(num, job_overrides, folder)
                _set_job(cfg, folder)
                _check(task, cfg, job)
                plan.jobs.append(job)
            return plan
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = previous


def format_plan(plan: Plan, seconds: float | None = None) -> list[str]:
    """What a dry run prints: a header, one line per job, and for a sweep the count."""
    script = f"{plan.config_name}.py"
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    if not plan.multirun:
        job = plan.jobs[0]
        if job.refusal is not None:
            return [f"dry run of {script}{took}: refused (nothing written, no data read)"]
        return [f"dry run of {script}{took}: nothing written, no data read; the run would be", "",
                f"  {job.folder}: {job.line}"]
    width = len(str(len(plan.jobs) - 1))
    lines = [f"dry run of {script} -m{took}: {len(plan.jobs)} job(s) for hydra/launcher={plan.launcher} "
             f"(nothing submitted, nothing written, no data read), in {plan.folder}/"]
    if plan.note:
        lines.append(f"  note: {plan.note}")
    for job in plan.jobs:
        name = os.path.relpath(job.folder, plan.folder) if job.folder != "?" else " ".join(job.overrides)
        state = f"refused: {job.refusal}" if job.refusal is not None else job.line
        lines.append(f"  #{job.num:<{width}} {name}: {state}")
    refused = len(plan.refused)
    lines.append(f"{len(plan.jobs)} job(s): {len(plan.jobs) - refused} pass, {refused} refused")
    return lines


def main(conf_dir: str | Path, config_name: str, argv: list[str]) -> int:
    """An entry point's ``dry_run=true``: print the plan; the exit status (0: every job
    passes, 2: a refusal, with one ``error:`` line on stderr: the run's, or a sweep's count)."""
    start = time.perf_counter()
    try:
        plan = check_command(conf_dir, config_name, argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    print("\n".join(format_plan(plan, time.perf_counter() - start)), flush=True)
    if plan.refused:
        error = plan.refused[0].refusal if not plan.multirun else \
            f"{len(plan.refused)} of {len(plan.jobs)} jobs of the sweep refused (each one's line above)"
        print(f"error: {error}", file=sys.stderr, flush=True)
    return 2 if plan.refused else 0
