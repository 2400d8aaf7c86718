"""Every config group option and every experiment composes and instantiates."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF

GROUPS = ["dataset", "model", "noise", "method", "optimizer", "scheduler", "augment", "debug"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(compose_cfg, group, option):
    cfg = compose_cfg("train", [f"{group}={option}", "paths.output_dir=/tmp/x"])
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    node = container.get(group)
    if group != "debug":  # debug options are _global_ deltas, not object nodes
        assert node is None or "_target_" in node, f"{group}/{option} has no _target_"


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(compose_cfg, experiment):
    cfg = compose_cfg("train", [f"experiment={experiment}", "paths.output_dir=/tmp/x"])
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.name == experiment


def test_defaults_are_the_paper_cifar10_setting(compose_cfg):
    cfg = compose_cfg("train", ["paths.output_dir=/tmp/x"])
    assert cfg.dataset.name == "cifar10" and cfg.model._target_ == "sat.models.ResNet" and cfg.model.depth == 34
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.1, 0.9, 5e-4)
    assert cfg.trainer.batch_size == 256 and cfg.trainer.epochs == 200
    assert cfg.scheduler._target_.endswith("CosineAnnealingLR") and cfg.scheduler.T_max == 200
    assert (cfg.method.alpha, cfg.method.start_epoch) == (0.9, 60)
    assert cfg.augment.padding == 4 and cfg.augment.flip


def test_method_override_reaches_the_constructor(compose_cfg):
    cfg = compose_cfg("train", ["method=sat", "method.alpha=0.95", "noise.rate=0.4", "paths.output_dir=/tmp/x"])
    method = instantiate(cfg.method)
    assert method.alpha == 0.95 and instantiate(cfg.noise).rate == 0.4


def test_experiment_method_tuning_applies_only_to_its_method(compose_cfg):
    sat = compose_cfg("train", ["experiment=quickstart", "paths.output_dir=/tmp/x"])
    ce = compose_cfg("train", ["experiment=quickstart", "method=ce", "paths.output_dir=/tmp/x"])
    cli = compose_cfg("train", ["experiment=quickstart", "method.start_epoch=3", "paths.output_dir=/tmp/x"])
    assert sat.method.start_epoch == 10  # method_tuning/quickstart-sat.yaml
    assert "start_epoch" not in ce.method
    instantiate(ce.method)
    assert cli.method.start_epoch == 3  # the command line wins


@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizer_and_scheduler_partials_build(compose_cfg, option):
    import torch

    cfg = compose_cfg("train", [f"optimizer={option}", "paths.output_dir=/tmp/x"])
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = instantiate(cfg.optimizer)(params)
    for sched in options("scheduler"):
        scfg = compose_cfg("train", [f"scheduler={sched}", "paths.output_dir=/tmp/x"])
        scheduler = instantiate(scfg.scheduler)(opt)
        opt.step()
        scheduler.step()


def test_evaluate_config_composes(compose_cfg):
    cfg = compose_cfg("evaluate", ["checkpoint=x.pt", "paths.output_dir=/tmp/x"])
    assert cfg.checkpoint == "x.pt"


def test_sweep_subdir_names_overrides_then_seed(compose_cfg):
    from sat.tasks.common import _sweep_subdir

    cfg = compose_cfg("train", ["method=ce", "seed=3"], return_hydra_config=True)

    assert _sweep_subdir("method=ce", 3) == "method=ce,seed=3"
    assert _sweep_subdir("", 3) == "seed=3"
    assert "seed" in cfg.hydra.job.config.override_dirname.exclude_keys
