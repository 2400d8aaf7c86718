"""The hparams_search group composed for real: every search space names keys of its
method's config and maximises the noisy validation accuracy; a study folder is named by
the command's fixed settings through the key roles (as sweep job folders are); a search
whose run has no validation split is refused before any trial (in this process; the CLI's
line: tests/e2e/test_cli_errors.py)."""

from __future__ import annotations

import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from sat.errors import UserError

SPACES = sorted(p.stem for p in (ROOT / "conf" / "hparams_search").glob("*.yaml"))


@pytest.mark.parametrize("option", SPACES)
def test_every_search_space_composes_and_names_keys_of_its_method(compose_cfg, option):
    from hydra_plugins.sat_optuna_sweeper import space

    cfg = compose_cfg("train", ["experiment=quickstart", f"hparams_search={option}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.sat_optuna_sweeper.sweeper.StudySweeper"
    assert sweeper.direction == "maximize" and cfg.objective == "final/val/acc"
    params = OmegaConf.to_container(sweeper.params)
    distributions, fixed = space.parse(params, [])
    assert set(distributions) == set(params) and fixed == []
    for key in params:
        assert OmegaConf.select(cfg, key) is not None, f"hparams_search={option} searches {key}, which is not a key"
    assert option == "optuna" or params  # only the base file leaves the space to the command line


def test_a_study_folder_is_named_by_the_command_s_fixed_settings_and_its_objective(compose_cfg):
    """Neutral keys (logger, device, thread counts) name no study, as they name no sweep job;
    the objective, neutral for a run, names the study; a key given twice counts once."""
    from sat.cli.search import study_subdir

    fixed = ["experiment=quickstart", "hparams_search=sat", "noise.rate=0.6", "logger=none", "device=cpu",
             "trainer.num_threads=1", "objective=at_best_val/val/acc", "trainer.epochs=50", "trainer.epochs=60",
             "seed=1"]
    cfg = compose_cfg("train", fixed, return_hydra_config=True)
    assert OmegaConf.select(cfg, "hydra.sweep.dir") == \
        "multirun/quickstart/search-sat/noise.rate-0.6+objective-at_best_val_val_acc+trainer.epochs-60+seed-1"
    # searched keys (the command line's, beside the file's) are the study's, not its name's
    searched = ["method.alpha=interval(0.5,0.9)", "optimizer.lr=tag(log, interval(0.01,0.1))"]
    assert study_subdir([*fixed, *searched], 1, _root_=cfg) == \
        "noise.rate-0.6+objective-at_best_val_val_acc+trainer.epochs-60+seed-1"
    plain = compose_cfg("train", ["experiment=quickstart", "hparams_search=quickstart", "logger=none"],
                        return_hydra_config=True)
    assert OmegaConf.select(plain, "hydra.sweep.dir") == "multirun/quickstart/search-quickstart/seed-0"


def test_a_search_without_a_validation_split_is_refused(compose_cfg):
    from sat.tasks.search import check_searchable

    cfg = compose_cfg("train", ["experiment=quickstart", "hparams_search=quickstart", "dataset.val_size=0"])
    with pytest.raises(UserError) as refused:
        check_searchable(cfg)
    assert refused.value.key == "dataset.val_size" and refused.value.value == 0
    assert str(refused.value) == (
        "dataset.val_size=0 leaves no validation split, where the search maximises objective=final/val/acc; "
        "accepted: dataset.val_size=N with N > 0 (noisy labels held out of training: the search never reads clean "
        "labels)")
    check_searchable(compose_cfg("train", ["experiment=quickstart", "hparams_search=quickstart"]))  # 200 held out
    # an objective on the test set reads no validation split (an oracle, never a search's default)
    check_searchable(compose_cfg("train", ["experiment=quickstart", "hparams_search=quickstart", "dataset.val_size=0",
                                           "objective=final/test/acc"]))
