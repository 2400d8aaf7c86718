"""The framework from Python, without the command line: the same configs, composed by
Hydra's compose API, the same tasks and logging, the summary returned.

    import sat
    summary = sat.train("experiment=quickstart method=sat", output_dir="runs/q")
    result = sat.evaluate(f"checkpoint={summary['output_dir']}/checkpoints/best.pt")

Bad input raises :class:`sat.errors.UserError` (the command line prints it as one line).
The configs are read from the ``conf/`` folder of the checkout ``sat`` is installed from
(``pip install -e .``).
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


def _compose(config_name: str, items: list[str]) -> Any:
    """Hydra's compose; a config it cannot compose (an unknown option or key, a malformed
    override) is bad input, as on the command line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sat.config.keys import check_keys, composition_error

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name=config_name):
            cfg = compose(config_name=config_name, overrides=items, return_hydra_config=True)
    except Exception as e:
        error = composition_error(e)
        if error is None:
            raise
        raise error from None
    check_keys(cfg)  # keys added with +, which Hydra accepts whatever they are
    return cfg


def _output_dir(output_dir: str | Path | None, default: Any) -> Path:
    if output_dir is not None and not str(output_dir).strip():
        raise UserError("output_dir='' names no folder; accepted: a folder path, or None for the config's hydra.run.dir")
    return Path(output_dir if output_dir is not None else default).expanduser().resolve()


def _run(config_name: str, task: Callable[[Any], dict[str, Any]], overrides: str | Sequence[str],
         output_dir: str | Path | None) -> dict[str, Any]:
    """Compose ``config_name`` with ``overrides``, set Hydra's run context (output folder,
    choices, logging, the ``.hydra/`` record) as ``@hydra.main`` would, run ``task``.
    As on the command line, the folder is checked and locked before anything is written in it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log
    from omegaconf import OmegaConf, open_dict

    from sat.cli import register_config
    from sat.run.folder import hold_lock, prepare_output_dir, refuse_other_task, release_lock
    from sat.run.files import write_atomic

    if not CONF.is_dir():
        raise FileNotFoundError(f"{CONF} is missing: the API reads the configs of a source checkout (pip install -e .)")
    register_config()
    items = _overrides(overrides)
    cfg = _compose(config_name, items)
    out = prepare_output_dir(_output_dir(output_dir, cfg.hydra.run.dir))
    refuse_other_task(out, config_name)
    hold_lock(out)  # (links where sat writes are refused here too)
    try:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(out)
            cfg.hydra.job.name = config_name
        HydraConfig.instance().set_config(cfg)
        (out / ".hydra").mkdir(exist_ok=True)
        task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        for name, node in (("config.yaml", task_cfg), ("hydra.yaml", cfg.hydra), ("overrides.yaml", items)):
            write_atomic(out / ".hydra" / name, OmegaConf.to_yaml(OmegaConf.create(node) if name == "overrides.yaml"
                                                                   else node))
        log_cfg = OmegaConf.to_container(cfg.hydra.job_logging, resolve=True)
        log_cfg["handlers"]["file"]["filename"] = str(out / f"{config_name}.log")
        configure_log(OmegaConf.create(log_cfg), cfg.hydra.verbose)
        return task(task_cfg)
    finally:
        release_lock(out)


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
