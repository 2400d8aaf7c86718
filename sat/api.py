"""The framework from Python, without the command line: the same configs, composed and
run by Hydra's own run (its output folder, ``.hydra/`` record, logging and callbacks, as
``@hydra.main`` sets them up), the same task wrapper as the entry points, the result
returned.

    import sat
    summary = sat.train("experiment=quickstart method=sat", output_dir="runs/q")
    result = sat.evaluate(f"checkpoint={summary['output_dir']}/checkpoints/best.pt")

Bad input raises :class:`sat.errors.UserError` (the command line prints it as one line)
and, as there, leaves no run folder behind. ``dry_run=true`` checks the command and returns
``{"dry_run": True, "output_dir": ..., "plan": <what would run>}``, writing nothing. The configs are read from the ``conf/``
folder of the checkout ``sat`` is installed from (``pip install -e .``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sat.errors import UserError

CONF = Path(__file__).resolve().parents[1] / "conf"


def _overrides(overrides: str | Sequence[str]) -> list[str]:
    if not isinstance(overrides, str):
        return [str(o) for o in overrides]
    try:
        return shlex.split(overrides)
    except ValueError as e:  # an unbalanced quote
        raise UserError(f"overrides {overrides!r} cannot be split into settings ({e}); accepted: key=value items "
                        "separated by spaces, quotes balanced") from None


def _run_dir(output_dir: str | Path | None) -> list[str]:
    """``hydra.run.dir=...`` for ``output_dir`` (quoted for Hydra's override grammar); none
    for None (the config's own ``hydra.run.dir``)."""
    if output_dir is None:
        return []
    if not str(output_dir).strip():
        raise UserError("output_dir='' names no folder; accepted: a folder path, or None for the config's hydra.run.dir")
    folder = str(Path(output_dir).expanduser().resolve())
    return ["hydra.run.dir='" + folder.replace("\\", "\\\\").replace("'", "\\'") + "'"]


def _run(config_name: str, task: Callable[[Any], dict[str, Any]], overrides: str | Sequence[str],
         output_dir: str | Path | None) -> dict[str, Any]:
    """Run ``task`` as its entry point would, through Hydra's own run of ``config_name``
    with ``overrides``; a config Hydra cannot compose is bad input, as on the command line."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sat.cli import bad_input, check_output_dirs, dry_run, guarded
    from sat.cli.register import register_config

    if not CONF.is_dir():
        raise FileNotFoundError(f"{CONF} is missing: the API reads the configs of a source checkout (pip install -e .)")
    register_config()
    items = [*_overrides(overrides), *_run_dir(output_dir)]
    check_output_dirs(items)
    if dry_run.requested(items):  # checked, not run: nothing written
        job = dry_run.check_command(CONF, config_name, items).jobs[0]
        if job.refusal is not None:
            raise job.refusal
        return {"dry_run": True, "output_dir": str(Path(job.folder).resolve()), "plan": job.line}
    GlobalHydra.instance().clear()
    def job(cfg: Any) -> Any:  # a refusal is the job's result: raised below, once Hydra's run has ended
        try:
            return guarded(task, cfg, log_refusal=False)
        except UserError as e:
            return e

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name=config_name):
            result = GlobalHydra.instance().hydra.run(config_name, job, items).return_value
    except Exception as e:
        error = bad_input(e)
        if error is None:
            raise
        raise error from None
    finally:
        GlobalHydra.instance().clear()
    if isinstance(result, UserError):
        raise result
    return result


def train(overrides: str | Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    """``python train.py <overrides>`` from Python; returns the run's summary."""
    from sat.tasks import train

    return _run("train", train.run, overrides, output_dir)


def evaluate(overrides: str | Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    """``python evaluate.py <overrides>``; returns the evaluation."""
    from sat.tasks import evaluate

    return _run("evaluate", evaluate.run, overrides, output_dir)


def attack(overrides: str | Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    """``python attack.py <overrides>``; returns the robustness summary."""
    from sat.tasks import attack

    return _run("attack", attack.run, overrides, output_dir)
