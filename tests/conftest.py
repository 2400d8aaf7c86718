"""Shared fixtures: compose the real config tree the way the entry points do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from sat.cli import register_resolvers

register_resolvers()  # as the entry points do before Hydra composes

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture
def compose_cfg():
    """``compose_cfg(config_name, overrides)`` -> the composed DictConfig."""

    def _compose(config_name: str = "train", overrides: list[str] | None = None, return_hydra_config: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides or [], return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


def run_entry(script: str, *args: str, cwd: Path, timeout: int = 600, check: bool = True,
              env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run a real entry point (train.py, evaluate.py, ...) in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # the user's view: no Hydra traces
    env["PYTHONUNBUFFERED"] = "1"
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# Settings that make any training config tiny: synthetic data, a small CNN, 2 epochs, CPU.
TINY = [
    "dataset=synthetic", "model=cnn", "model.width=8", "augment=none", "trainer.epochs=2",
    "trainer.batch_size=64", "device=cpu", "method.start_epoch=1",
]
