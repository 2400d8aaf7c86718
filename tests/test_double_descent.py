"""The double-descent experiments compose, expand to the intended grid, scale SAT's
hyper-parameters with the width, and pick the launcher presets."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sat.report import expand_grid

OUT = "paths.output_dir=/tmp/x"


def grid(compose_cfg, experiment: str, *cli: str) -> list[list[str]]:
    """The jobs of ``python train.py -m experiment=<experiment> <cli>`` (the sweeper
    declared in the composed config, the command line on top)."""
    cfg = compose_cfg("train", [f"experiment={experiment}", OUT], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    return expand_grid(params, [f"experiment={experiment}", *cli])


def values(jobs: list[list[str]], key: str) -> list[str]:
    found = {o.split("=", 1)[1] for job in jobs for o in job if o.startswith(f"{key}=")}
    return sorted(found, key=lambda v: (len(v), v))  # numbers in numeric order


def test_resnet18_sweep_is_the_papers_setting(compose_cfg):
    for method in ("ce", "sat"):
        cfg = compose_cfg("train", ["experiment=dd_resnet18_cifar10", f"method={method}", OUT])
        assert cfg.name == "dd_resnet18_cifar10" and cfg.dataset.name == "cifar10" and cfg.dataset.val_size == 0
        assert (cfg.model._target_, cfg.model.depth) == ("sat.models.ResNet", 18)
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


def test_digits_sweep_grid_and_settings(compose_cfg):
    jobs = grid(compose_cfg, "dd_digits", "method=ce,sat")
    widths = [8, 16, 32, 64, 128, 256, 512, 1024]
    assert len(jobs) == 2 * len(widths) * 3
    assert values(jobs, "model.width") == [str(w) for w in widths] and values(jobs, "seed") == ["0", "1", "2"]
    cfg = compose_cfg("train", ["experiment=dd_digits", OUT])
    assert cfg.model._target_ == "sat.models.MLP" and cfg.dataset._target_.endswith("Digits")
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
