"""A method's phases, read generically (``Method.phase_starts``): ``debug=fast`` moves every
later phase into its two epochs under every experiment, a run that never reaches one is
refused, and what a method declares is what its steps do."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import CONF
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sat.config.schema import TrainerSettings
from sat.config.validate import argument_names
from sat.tasks.train.objects import build_objects


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# sat's methods whose behaviour changes at an epoch: each must keep declaring it, and its loss
# must change at the declared start. (A new method that declares phases is covered by the
# first test without being listed here.)
DELAYED = {"sat", "sat_sce", "trades_sat", "sat_selective", "gambler", "forward", "backward", "dividemix", "ssl_sat"}


def experiments_setting(method: str) -> list[str | None]:
    """The experiments whose composition can change ``method``'s own settings (its phase
    starts): the default config, every experiment that chooses the method itself, and every
    one with a ``method_tuning/<experiment>-<method>.yaml``. Under any other experiment the
    method node is the method's own file, checked under the default config; what the
    experiment sets there (its trainer) is checked with its own method, so every experiment
    is covered without composing all 24 x 22 pairs (about 0.2 s each)."""
    chosen = [e for e in options("experiment")
              if OmegaConf.select(_own_defaults(e), "method") == method
              or (CONF / "method_tuning" / f"{e}-{method}.yaml").is_file()]
    return [None, *chosen]


@functools.cache
def _own_defaults(experiment: str):
    """An experiment file's ``override /<group>: <option>`` choices, as a config."""
    lines = OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml")).get("defaults") or []
    return OmegaConf.create({k.removeprefix("override /"): v for d in lines if isinstance(d, dict)
                             for k, v in d.items()})


def test_every_experiment_chooses_a_method_or_is_covered_by_the_default():
    """The pairs above cover every experiment: each chooses its method (an experiment
    without one runs the default config's, SAT, which is checked under it)."""
    for experiment in options("experiment"):
        own = OmegaConf.select(_own_defaults(experiment), "method") or "sat"
        assert experiment in experiments_setting(own), experiment


@pytest.mark.parametrize("method", options("method"))
def test_debug_fast_reaches_every_later_phase_under_every_experiment(compose_cfg, method):
    """debug=fast's two epochs exercise what the full run does: every phase start (also
    width-scaled, also a part's: TRADES' natural loss) moves to epoch 1, logged, and the
    key it names is the argument that sets it; under the default config and every experiment
    that sets the method's values or trainer (experiments_setting)."""
    for experiment in experiments_setting(method):
        chosen = [f"experiment={experiment}"] if experiment else []
        cfg = compose_cfg("train", [*chosen, f"method={method}", "debug=fast", "paths.output_dir=/tmp/x"])
        settings = TrainerSettings.from_config(cfg.trainer)
        m = instantiate(cfg.method)
        m.plan(settings.epochs, settings.phases_by)
        starts = m.phase_starts()
        assert starts or method not in DELAYED, (experiment, method, "declares no phase")
        for key, start in starts.items():
            assert start <= settings.phases_by == 1 < settings.epochs, (experiment, method, key, start)
            assert key.split(".")[0] in argument_names(type(m)), (method, key)


def _losses(compose_cfg, method: str, phases_by: int | None) -> list[float]:
    """The loss of one batch at epoch 0 and at epoch 1 (each after the method's
    ``before_epoch``), from the same model and the same random draws."""
    cfg = compose_cfg("train", ["dataset=synthetic", "dataset.num_train=96", "model=cnn", "model.width=4",
                                f"method={method}", "trainer.epochs=200", "device=cpu", "paths.output_dir=/tmp/x",
                                *(["augment=ssl_cifar", "augment.crop_scale=[0.5,1.0]"] if method == "ssl_sat"
                                  else ["augment=none"]),
                                *(["method.steps=1"] if method == "trades_sat" else []),
                                *(["method.pretrain=5"] if method == "gambler" else []),  # by default it has none
                                *([f"trainer.phases_by={phases_by}"] if phases_by is not None else [])])
    settings = TrainerSettings.from_config(cfg.trainer)
    torch.manual_seed(0)  # the same model in both calls
    objects = build_objects(cfg, settings, torch.device("cpu"))
    method_, model = objects.method, objects.model
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (96,), generator=g)
    method_.setup(labels, 4)
    x = objects.augment(images, g) if objects.augment is not None else images.float() / 255
    outputs = 4 + method_.extra_outputs
    losses, weights = [], {k: v.clone() for k, v in model.state_dict().items()}
    for epoch in (0, 1):
        model.load_state_dict(weights)  # (a forward in train mode moves BatchNorm's statistics)
        torch.manual_seed(1)
        method_.before_epoch(epoch, model, lambda net: net(images.float() / 255)[:, :outputs].float())
        torch.manual_seed(2)
        loss, _ = method_(model, x, labels, torch.arange(96), epoch)
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize("method", sorted(DELAYED))
def test_a_declared_phase_start_is_where_the_steps_change(compose_cfg, method):
    """With the phases at their configured starts (well after epoch 1), epochs 0 and 1
    compute the same loss; with ``trainer.phases_by=1`` epoch 1 is the later phase, and
    the loss differs: the declared start is what the method's steps read."""
    before, same = _losses(compose_cfg, method, None)
    assert before == pytest.approx(same, rel=1e-6, abs=1e-7), method
    first, later = _losses(compose_cfg, method, 1)
    assert first == pytest.approx(before, rel=1e-6, abs=1e-7) and later != pytest.approx(first, rel=1e-4), method


def test_a_run_that_never_reaches_a_phase_is_refused_by_its_key(compose_cfg):
    from sat.errors import UserError

    cfg = compose_cfg("train", ["method=dividemix", "trainer.epochs=10", "paths.output_dir=/tmp/x"])
    with pytest.raises(UserError, match=r"^method.warmup_epochs=10 >= trainer.epochs=10, so DivideMix's co-divide "
                                        r"and MixMatch would never start; accepted: method.warmup_epochs < 10"):
        build_objects(cfg, TrainerSettings.from_config(cfg.trainer), torch.device("cpu"))
