"""Every config group option and every experiment composes and instantiates."""

from __future__ import annotations

import pytest
from conftest import CONF
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sat.config.keys import check_keys

GROUPS = ["dataset", "model", "noise", "method", "optimizer", "scheduler", "augment", "debug"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(compose_cfg, group, option):
    cfg = compose_cfg("train", [f"{group}={option}", "paths.output_dir=/tmp/x"])
    check_keys(cfg)  # every key is one the schema or the constructor takes
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    node = container.get(group)
    if group != "debug":  # debug options are _global_ deltas, not object nodes
        assert node is None or "_target_" in node, f"{group}/{option} has no _target_"


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(compose_cfg, experiment):
    cfg = compose_cfg("train", [f"experiment={experiment}", "paths.output_dir=/tmp/x"])
    check_keys(cfg)
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.name == experiment


@pytest.mark.parametrize("option", options("attack"))
def test_every_attack_option_composes_with_known_keys(compose_cfg, option):
    cfg = compose_cfg("attack", [f"attack={option}", "checkpoint=x.pt", "paths.output_dir=/tmp/x"])
    check_keys(cfg)
    assert "_target_" in cfg.attack


def test_defaults_are_the_paper_cifar10_setting(compose_cfg):
    cfg = compose_cfg("train", ["paths.output_dir=/tmp/x"])
    assert cfg.dataset.name == "cifar10" and cfg.model._target_ == "sat.models.resnet.ResNet" and cfg.model.depth == 34
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
def test_optimizer_and_scheduler_partials_build_and_schedule(compose_cfg, option):
    """Each optimizer builds from its partial; each scheduler moves the rate as it says."""
    import math

    import torch

    cfg = compose_cfg("train", [f"optimizer={option}", "trainer.epochs=10", "paths.output_dir=/tmp/x"])
    lr0 = cfg.optimizer.lr
    for sched in options("scheduler"):
        params = [torch.nn.Parameter(torch.zeros(2))]
        opt = instantiate(cfg.optimizer)(params)
        assert type(opt).__name__.lower() == option and opt.param_groups[0]["lr"] == lr0
        scfg = compose_cfg("train", [f"scheduler={sched}", "trainer.epochs=10", "paths.output_dir=/tmp/x"])
        scheduler = instantiate(scfg.scheduler)(opt)
        opt.step()
        scheduler.step()
        lr = opt.param_groups[0]["lr"]
        if sched == "cosine":  # one of T_max = trainer.epochs = 10 steps down the cosine
            assert lr == pytest.approx(lr0 * (1 + math.cos(math.pi / 10)) / 2)
        else:  # constant, and step before its first milestone
            assert lr == pytest.approx(lr0)


def test_evaluate_config_defaults_and_required_checkpoint(compose_cfg, monkeypatch):
    from omegaconf.errors import MissingMandatoryValue

    monkeypatch.setenv("SAT_DATA_DIR", "/datasets")
    cfg = compose_cfg("evaluate", ["paths.output_dir=/tmp/x"])
    with pytest.raises(MissingMandatoryValue):
        cfg.checkpoint  # noqa: B018  (there is no default checkpoint)
    assert cfg.paths.data_dir == "/datasets" and cfg.dataset_root is None and list(cfg.trusted_packages) == []
    # the same keys as training's for the same things
    assert (cfg.device, cfg.trainer.precision, cfg.trainer.eval_batch_size) == ("auto", "auto", 1024)
    assert compose_cfg("attack", ["paths.output_dir=/tmp/x"]).trainer.eval_batch_size == 256


def test_sweep_subdir_is_pasteable_and_leaves_out_settings_that_change_nothing(compose_cfg):
    """Hydra's own override_dirname with our separators: no '=' or ',' (which Hydra's
    override parser rejects unquoted), and no thread counts or devices."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose_cfg("train", ["method=ce", "model.width=8", "trainer.num_threads=1", "device=cpu", "seed=3"],
                      return_hydra_config=True)
    subdir = OmegaConf.select(cfg, "hydra.sweep.subdir")
    assert subdir == "method-ce+model.width-8+seed-3"
    parsed = OverridesParser.create().parse_overrides([f"checkpoint=multirun/x/{subdir}/checkpoints/last.pt"])
    assert parsed[0].value() == f"multirun/x/{subdir}/checkpoints/last.pt"
    alone = compose_cfg("train", ["seed=1"], return_hydra_config=True)
    assert OmegaConf.select(alone, "hydra.sweep.subdir") == "seed-1"


def test_no_two_config_files_are_the_same():
    """A file that would repeat another points at it (``defaults: [its twin]``)."""
    files: dict[bytes, list[str]] = {}
    for path in sorted(CONF.rglob("*.yaml")):
        files.setdefault(path.read_bytes(), []).append(str(path.relative_to(CONF)))
    assert [paths for paths in files.values() if len(paths) > 1] == []


def test_every_target_a_checkpoint_may_name_is_registered():
    """evaluate/attack rebuild only registered classes: each sat config option must be one."""
    from sat.config.trust import project_targets

    for group, kind in [("model", "model"), ("dataset", "dataset"), ("noise", "noise"), ("method", "method"),
                        ("auto_start", "component")]:
        for option in options(group):
            node = OmegaConf.load(CONF / group / f"{option}.yaml")
            assert node._target_ in project_targets(kind), f"{group}/{option}: {node._target_}"
            for key in node:
                value = node._get_node(key)
                if OmegaConf.is_dict(value) and "_target_" in value:
                    allowed = project_targets(kind) | project_targets("component")
                    assert value._target_ in allowed, f"{group}/{option}: nested {value._target_}"


def _targets(node):
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


def test_every_yaml_target_names_its_class_s_defining_module():
    """One path convention for the project's classes: sat.methods.sat.SelfAdaptiveTraining, not
    the package's re-export (others' classes by their public path: torch.optim.SGD)."""
    from hydra.utils import get_object

    found = {}
    for path in CONF.rglob("*.yaml"):
        for target in _targets(OmegaConf.to_container(OmegaConf.load(path))):
            found[target] = path.relative_to(CONF)
    assert len(found) > 40
    for target, path in found.items():
        if not target.startswith("sat."):
            continue
        obj = get_object(target)
        assert f"{obj.__module__}.{obj.__qualname__}" == target, f"{path}: {target}"
