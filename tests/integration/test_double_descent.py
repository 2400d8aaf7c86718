"""The double-descent experiments compose, expand to the intended grid, scale SAT's
hyper-parameters with the width, and pick the launcher presets.

The grids are expanded by Hydra itself (its override parser and the basic sweeper's
``split_arguments``, and once through a real ``-m`` run), never by project code, so a
wrong grid in the YAML cannot be agreed with by a copy of the same mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
OUT = "paths.output_dir=/tmp/x"


def grid(compose_cfg, experiment: str, *cli: str) -> list[list[str]]:
    """The jobs of ``python train.py -m experiment=<experiment> <cli>``: the sweeper's
    params as the composed config declares them, the command line after them, expanded
    by sat's sweeper (Hydra's basic one, whose jobs keep the method keys their method takes)."""
    from hydra_plugins.sat_sweeper import SatSweeper

    cfg = compose_cfg("train", [f"experiment={experiment}", OUT], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.sat_sweeper.SatSweeper"
    declared = [f"{k}={v}" for k, v in OmegaConf.to_container(cfg.hydra.sweeper.params).items()]
    lines = declared + [f"experiment={experiment}", *cli]  # the lines BasicSweeper.sweep parses
    sweeper = SatSweeper(max_batch_size=None)  # (no method key here: nothing to compose)
    (jobs,) = sweeper.split_arguments(OverridesParser.create().parse_overrides(lines), max_batch_size=None)
    return jobs


def values(jobs: list[list[str]], key: str) -> list[str]:
    found = {o.split("=", 1)[1] for job in jobs for o in job if o.startswith(f"{key}=")}
    return sorted(found, key=lambda v: (len(v), v))  # numbers in numeric order


def test_resnet18_sweep_is_the_papers_setting(compose_cfg):
    for method in ("ce", "sat"):
        cfg = compose_cfg("train", ["experiment=dd_resnet18_cifar10", f"method={method}", OUT])
        assert cfg.name == "dd_resnet18_cifar10" and cfg.dataset.name == "cifar10" and cfg.dataset.val_size == 0
        assert (cfg.model._target_, cfg.model.depth) == ("sat.models.resnet.ResNet", 18)
        assert cfg.optimizer._target_ == "torch.optim.Adam"
        assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (1e-4, 0.0)
        assert cfg.scheduler._target_.endswith("ConstantLR")
        assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (128, 4000)
        assert cfg.augment._target_.endswith("CropFlip") and cfg.augment.padding == 4 and cfg.augment.flip
        assert cfg.noise._target_.endswith("UniformLabelNoise") and cfg.noise.rate == 0.1667
    sat = compose_cfg("train", ["experiment=dd_resnet18_cifar10", "method=sat", OUT]).method
    assert (sat.alpha, sat.start_epoch, sat.width_scaling, sat.reference_width) == (0.9, 40, True, 64)
    flip = compose_cfg("train", ["experiment=dd_resnet18_cifar10", "noise=flip", "noise.rate=0.15", OUT]).noise
    assert flip._target_.endswith("FlipLabelNoise") and flip.rate == 0.15


def test_resnet18_grid_is_widths_1_to_64_for_both_methods(compose_cfg):
    jobs = grid(compose_cfg, "dd_resnet18_cifar10", "method=ce,sat")
    assert len(jobs) == 2 * 64
    assert values(jobs, "model.width") == [str(k) for k in range(1, 65)]
    assert values(jobs, "method") == ["ce", "sat"]


def test_command_line_grid_replaces_the_declared_one(compose_cfg):
    jobs = grid(compose_cfg, "dd_resnet18_cifar10", "method=ce,sat", "model.width=1,2,4,8")
    assert len(jobs) == 8 and values(jobs, "model.width") == ["1", "2", "4", "8"]
    assert len(grid(compose_cfg, "dd_resnet18_cifar10", "method=sat", "model.width=16")) == 1


PROBE = """
import json, sys
sys.path.insert(0, {root!r})
import hydra
from hydra.core.hydra_config import HydraConfig
import train  # noqa: F401  the entry point's imports (its config resolvers)

@hydra.main(config_path={conf!r}, config_name="train", version_base="1.3")
def probe(cfg):
    print("JOB", json.dumps({{"overrides": list(HydraConfig.get().overrides.task), "width": cfg.model.width,
                             "seed": cfg.seed, "method": cfg.method._target_}}), flush=True)

probe()
"""


@pytest.mark.e2e  # starts a process
def test_a_real_multirun_makes_the_declared_digits_grid(tmp_path):
    """``-m`` through Hydra's real sweeper and launcher (a task that only records its
    composed config): the widths the experiment declares reach the jobs' configs."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(root=str(ROOT), conf=str(ROOT / "conf")))
    proc = subprocess.run(
        [sys.executable, str(script), "-m", "experiment=dd_digits", "method=ce", "seed=0", "hydra/launcher=basic",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=${hydra.job.num}",
         "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    jobs = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("JOB ")]
    assert [j["width"] for j in jobs] == [8, 16, 32, 64, 128, 256, 512, 1024]
    assert {j["seed"] for j in jobs} == {0} and {j["method"] for j in jobs} == {"sat.methods.ce.CrossEntropy"}
    assert all(f"model.width={j['width']}" in j["overrides"] for j in jobs)


def test_digits_sweep_grid_and_settings(compose_cfg):
    jobs = grid(compose_cfg, "dd_digits", "method=ce,sat")
    widths = [8, 16, 32, 64, 128, 256, 512, 1024]
    assert len(jobs) == 2 * len(widths) * 3
    assert values(jobs, "model.width") == [str(w) for w in widths] and values(jobs, "seed") == ["0", "1", "2"]
    cfg = compose_cfg("train", ["experiment=dd_digits", OUT])
    assert cfg.model._target_ == "sat.models.small.MLP" and cfg.dataset._target_.endswith("Digits")
    assert cfg.noise._target_.endswith("FlipLabelNoise") and cfg.noise.rate == 0.2
    assert cfg.trainer.num_threads == 1  # parallel CPU jobs must not oversubscribe the cores


@pytest.mark.parametrize("experiment,reference,widths", [
    ("dd_resnet18_cifar10", 64, [1, 3, 16, 64]),
    ("dd_digits", 128, [4, 100, 128, 1024]),
])
def test_width_scaling_follows_the_formula(compose_cfg, experiment, reference, widths):
    for width in widths:
        cfg = compose_cfg("train", [f"experiment={experiment}", "method=sat", f"model.width={width}", OUT])
        method = instantiate(cfg.method)
        assert method.alpha == pytest.approx(0.9 ** (width / reference))
        assert method.start_epoch == int(40 * reference / width)
        assert method.hparams()["alpha"] == pytest.approx(method.alpha)  # what summary.json and TensorBoard log
    off = compose_cfg("train", [f"experiment={experiment}", "method=sat", "method.width_scaling=false", OUT])
    assert (instantiate(off.method).alpha, instantiate(off.method).start_epoch) == (0.9, 40)


def test_launcher_presets(compose_cfg):
    def launcher(*overrides: str):
        return compose_cfg("train", [*overrides, OUT], return_hydra_config=True).hydra.launcher

    joblib_target = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher("experiment=dd_digits")._target_ == joblib_target  # dd_digits runs in parallel by default
    assert launcher("hydra/launcher=local")._target_ == joblib_target
    assert launcher("hydra/launcher=joblib").n_jobs == -1
    assert launcher("experiment=dd_digits", "hydra/launcher=basic")._target_.endswith("BasicLauncher")
    slurm = launcher("experiment=dd_resnet18_cifar10", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                     "hydra.launcher.timeout_min=60", "hydra.launcher.array_parallelism=8",
                     "hydra.launcher.gpus_per_node=2")
    assert slurm._target_.endswith("SlurmLauncher")
    assert (slurm.partition, slurm.timeout_min, slurm.array_parallelism, slurm.gpus_per_node) == ("gpu", 60, 8, 2)
    assert launcher("hydra/launcher=slurm").gpus_per_node == 1
