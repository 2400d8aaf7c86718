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

CONF = Path(__file__).resolve().parents[1] / "conf"


def _overrides(overrides: str | Sequence[str]) -> list[str]:
    from sat.errors import UserError

    if not isinstance(overrides, str):
        return [str(o) for o in overrides]
    try:
        return shlex.split(overrides)
    except ValueError as e:  # "No closing quotation"
        raise UserError(f"cannot split the overrides {overrides!r} ({e}); accepted: key=value items, "
                        "quoted as a whole where a value has spaces") from None


def _run(config_name: str, task: Callable[[Any], dict[str, Any]], overrides: str | Sequence[str],
         output_dir: str | Path | None) -> dict[str, Any]:
    """Compose ``config_name`` with ``overrides``, set Hydra's run context (output folder,
    choices, logging, the ``.hydra/`` record) as ``@hydra.main`` would, run ``task``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log
    from omegaconf import OmegaConf, open_dict

    from sat.cli import register_config
    from sat.tasks.keys import check_keys, composition_error

    if not CONF.is_dir():
        raise FileNotFoundError(f"{CONF} is missing: the API reads the configs of a source checkout (pip install -e .)")
    register_config()
    items = _overrides(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name=config_name):
            cfg = compose(config_name=config_name, overrides=items, return_hydra_config=True)
    except Exception as e:
        error = composition_error(e)
        if error is None:
            raise
        raise error from None
    check_keys(cfg)
    out = Path(output_dir if output_dir is not None else cfg.hydra.run.dir).expanduser().resolve()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.name = config_name
    HydraConfig.instance().set_config(cfg)
    (out / ".hydra").mkdir(parents=True, exist_ok=True)
    task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.save(task_cfg, out / ".hydra" / "config.yaml")
    OmegaConf.save(cfg.hydra, out / ".hydra" / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(items), out / ".hydra" / "overrides.yaml")
    log_cfg = OmegaConf.to_container(cfg.hydra.job_logging, resolve=True)
    log_cfg["handlers"]["file"]["filename"] = str(out / f"{config_name}.log")
    configure_log(OmegaConf.create(log_cfg), cfg.hydra.verbose)
    return task(task_cfg)


def train(overrides: str | Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    """``python train.py <overrides>`` from Python; returns the run's summary."""
    from sat import tasks

    return _run("train", tasks.train, overrides, output_dir)


def evaluate(overrides: str | Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    """``python evaluate.py <overrides>``; returns the evaluation."""
    from sat import tasks

    return _run("evaluate", tasks.evaluate, overrides, output_dir)


def attack(overrides: str | Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    """``python attack.py <overrides>``; returns the robustness summary."""
    from sat import tasks

    return _run("attack", tasks.attack, overrides, output_dir)
