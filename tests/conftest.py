"""Shared fixtures: compose the real config tree the way the entry points do.

The tests are arranged by what they exercise: ``unit/`` (one module's functions and
classes), ``integration/`` (the real config composed and a task run in this process),
``e2e/`` (the real entry points, torchrun, a browser, a notebook kernel: processes).
Every test that starts a process is marked ``e2e`` (all of ``e2e/``, and the few such
tests elsewhere by decorator), and a test that starts one unmarked fails: so
``pytest -m "not e2e"`` is the fast loop, and stays one."""

from __future__ import annotations

import fcntl
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

from sat.cli.register import register_config

register_config()  # as the entry points do before Hydra composes

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


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if item.path.parent.name == "e2e":
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True, scope="session")
def _physical_cores_counted():
    """scikit-learn (DivideMix's GMM, k-means) asks joblib for the physical core count, which runs
    ``lscpu`` once per process and caches it: count once here, before the guard below watches."""
    import joblib
    joblib.cpu_count(only_physical_cores=True)


@pytest.fixture(autouse=True)
def _processes_only_in_e2e(request, monkeypatch, _physical_cores_counted):
    """Fail a test that starts a process (subprocess, torch.multiprocessing) without the
    ``e2e`` marker: the fast loop (``-m "not e2e"``) must not start any."""
    if request.node.get_closest_marker("e2e") is not None:
        yield
        return
    import torch.multiprocessing

    started: list[str] = []
    popen_init, start_processes = subprocess.Popen.__init__, torch.multiprocessing.start_processes

    def watched_popen(self, args, *rest, **kwargs):
        started.append(str(args)[:200])
        return popen_init(self, args, *rest, **kwargs)

    def watched_start(*args, **kwargs):
        started.append("torch.multiprocessing.start_processes")
        return start_processes(*args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", watched_popen)
    monkeypatch.setattr(torch.multiprocessing, "start_processes", watched_start)
    yield
    assert not started, f"this test starts a process ({started[0]}) but is not marked e2e (tests/e2e/ or @pytest.mark.e2e)"


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
    other). Returns the sweep folder (``method-ce+seed-0``, ``method-sat+seed-0``) and the process.

    Under pytest-xdist each worker process would train its own: the first to get here
    trains it into the session's shared folder, the others wait for it and read it."""
    shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else None
    root = shared if shared is not None else tmp_path_factory.mktemp("session")
    sweep, record = root / "quickstart", root / "quickstart.json"
    with open(root / "quickstart.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the sweep fails
        if not record.is_file():
            sweep.mkdir(exist_ok=True)  # (a worker whose sweep failed left it: train again)
            proc = run_entry("train.py", "-m", "experiment=quickstart", "method=ce,sat", "hydra/launcher=local",
                             "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", cwd=sweep, timeout=1800)
            record.write_text(json.dumps({"args": proc.args, "stdout": proc.stdout, "stderr": proc.stderr}))
    done = json.loads(record.read_text())
    return sweep, subprocess.CompletedProcess(done["args"], 0, done["stdout"], done["stderr"])


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
