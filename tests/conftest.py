"""Shared fixtures: compose the real config tree the way the entry points do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of pytest-xdist's processes (-n 2: one per core)
    # Each worker takes one core, and so do the runs it starts: torch's default of a thread
    # per core in every worker would oversubscribe the machine.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (after the thread setting above, which torch reads at import)
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra

from sat.cli import register_resolvers

register_resolvers()  # as the entry points do before Hydra composes

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Fixtures that train (or write) something several tests read. pytest-xdist builds a
# module- or session-scoped fixture in every worker that runs one of its tests, so the
# tests sharing one are kept in one worker (``--dist loadgroup``): it is built once.
SHARED_FIXTURES = {"quickstart_sweep", "trained", "refused_rerun", "sweep", "run_dir", "single", "ddp", "sat_run",
                   "dd_sweep", "noise_sweep", "uninterrupted", "base", "bombs", "cifar10", "split"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        shared = sorted(SHARED_FIXTURES.intersection(getattr(item, "fixturenames", ())))
        if shared:  # the session's quickstart sweep is one group; the others are per module
            group = "quickstart_sweep" if "quickstart_sweep" in shared else item.module.__name__
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def compose_cfg():
    """``compose_cfg(config_name, overrides)`` -> the composed DictConfig."""

    def _compose(config_name: str = "train", overrides: list[str] | None = None, return_hydra_config: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides or [], return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(autouse=True)
def _torch_settings_restored():
    """A run in this process sets PyTorch's thread count (trainer.num_threads) and
    deterministic mode for the whole process: give the next test the settings it would
    have had alone."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


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


@pytest.fixture(scope="session")
def quickstart_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The README's comparison, once for the whole session (the slowest training of the
    suite; its SAT run also serves the soft-label and label-error tests):
    ``python train.py -m experiment=quickstart method=ce,sat``, its two jobs side by side
    (the quickstart runs each job on one thread, so the results are those of one after the
    other). Returns the sweep folder (``method-ce+seed-0``, ``method-sat+seed-0``) and the process."""
    sweep = tmp_path_factory.mktemp("quickstart")
    proc = run_entry("train.py", "-m", "experiment=quickstart", "method=ce,sat", "hydra/launcher=local",
                     "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", cwd=sweep, timeout=1800)
    return sweep, proc


def read_metrics(run: Path, timings: bool = True) -> list[dict]:
    """A run's ``metrics.jsonl``, one dict per epoch; ``timings=False`` drops the wall-clock
    ``time/*`` values (which differ between otherwise equal runs)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return rows if timings else [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def user_error(task: Callable[..., dict], overrides: Sequence[str], output_dir: Path) -> str:
    """The one-line message of the bad input that ``task`` (``sat.train``, ``sat.evaluate``,
    ``sat.attack``) refuses in this process: the Python API's side of what the entry points
    print after ``error:`` (the subprocess tests keep the exit status and the printing)."""
    from sat.errors import UserError

    with pytest.raises(UserError) as refused:
        task(list(overrides), output_dir=output_dir)
    message = str(refused.value)
    assert message and "\n" not in message, repr(message)
    return message


# Settings that make any training config tiny: synthetic data, a small CNN, 2 epochs, CPU.
TINY = [
    "dataset=synthetic", "model=cnn", "model.width=8", "augment=none", "trainer.epochs=2",
    "trainer.batch_size=64", "device=cpu", "method.start_epoch=1",
]
