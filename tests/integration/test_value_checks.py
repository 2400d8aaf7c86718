"""Issue 19, items 5, 7 and 8: config values that used to be accepted and ignored, or to
fail late with Python's own message, refused in one line at start; the Python API's
promises."""

from __future__ import annotations

import pytest
from conftest import CONF
from omegaconf import OmegaConf

from sat.config.value_checks import check_node, check_seed
from sat.errors import UserError

SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "momentum": 0.9, "nesterov": False}
MULTISTEP = {"_target_": "torch.optim.lr_scheduler.MultiStepLR", "_partial_": True, "milestones": [100, 150],
             "gamma": 0.1}
STEP = {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": 25, "gamma": 0.5}
COSINE = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True, "T_max": 200, "eta_min": 0.0}
PLATEAU = {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "_partial_": True, "factor": 0.1}
GCE = {"_target_": "sat.methods.gce.GeneralizedCrossEntropy", "q": 0.7}


@pytest.mark.parametrize("node,key,value,message", [
    (SGD, "nesterov", "maybe", "optimizer.nesterov='maybe' is not true or false"),
    (SGD, "lr", "abc", "optimizer.lr='abc' is not a number"),
    (MULTISTEP, "milestones", "abc", "scheduler.milestones='abc' is not a list of integers"),
    (MULTISTEP, "gamma", "abc", "scheduler.gamma='abc' is not a number"),
    (STEP, "step_size", 0, "scheduler.step_size=0 is out of range; accepted: an integer >= 1"),
    (STEP, "step_size", "abc", "scheduler.step_size='abc' is not an integer"),
    (COSINE, "T_max", "abc", "scheduler.T_max='abc' is not an integer"),
    (COSINE, "eta_min", "abc", "scheduler.eta_min='abc' is not a number"),
    (PLATEAU, "factor", "abc", "scheduler.factor='abc' is not a number"),
    (PLATEAU, "factor", 1.5, "scheduler.factor=1.5 is out of range"),
    (GCE, "q", "abc", "method.q='abc' is not a number"),
])
def test_a_value_its_constructor_does_not_take_is_refused_at_start(node, key, value, message):
    group = "optimizer" if "optim." in node["_target_"] and "lr_scheduler" not in node["_target_"] else \
        "scheduler" if "lr_scheduler" in node["_target_"] else "method"
    check_node(node, group)  # the shipped value is fine
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(".", r"\.")) as e:
        check_node({**node, key: value}, group)
    assert "\n" not in str(e.value) and "accepted:" in str(e.value)


def test_nested_nodes_are_checked_under_their_own_name():
    trades = {"_target_": "sat.methods.TRADES", "natural": {**GCE, "q": "abc"}}
    with pytest.raises(UserError, match=r"^method\.natural\.q='abc'"):
        check_node(trades, "method")


@pytest.mark.parametrize("group", ["optimizer", "scheduler", "method"])
def test_every_shipped_option_passes_the_checks(group):
    """No false refusal: each option file of the group, as written (interpolations and
    missing values are left to the places that read them)."""
    files = sorted((CONF / group).glob("*.yaml"))
    assert files
    for path in files:
        node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        node.pop("defaults", None)
        check_node(node, group)


@pytest.mark.parametrize("value", [1e20, 2 ** 64, -1, "abc", 0.5, True])
def test_a_seed_torch_cannot_take_is_refused(value):
    with pytest.raises(UserError, match=r"^seed="):
        check_seed("seed", value)


def test_a_seed_torch_can_take_is_kept():
    import torch

    for value in (0, 7, 2 ** 63 - 1, 3.0):
        seed = check_seed("seed", value)
        torch.manual_seed(seed)
        assert isinstance(seed, int)


# --- item 8: the Python API -------------------------------------------------------------------


@pytest.mark.parametrize("overrides,match", [
    ("method=nosuch", r"method=nosuch is not an option; accepted: the files in conf/method/: .*\bsat\b"),
    ("nosuchkey=1", "nosuchkey is not a key of the config; accepted: augment, "),
    ("method='sat", "cannot be split into settings"),
])
def test_the_api_refuses_what_it_cannot_compose_with_a_user_error(tmp_path, overrides, match):
    import sat

    with pytest.raises(UserError, match=match):
        sat.train(overrides, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["empty", "file", "under_a_file"])
def test_the_api_refuses_an_output_dir_it_cannot_use(tmp_path, monkeypatch, kind):
    import sat

    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("")
    out = {"empty": "", "file": tmp_path / "f", "under_a_file": tmp_path / "f" / "run"}[kind]
    with pytest.raises(UserError, match="output"):
        sat.train("experiment=quickstart", output_dir=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # nothing made in the current folder


def test_the_api_locks_and_checks_the_folder_before_writing_its_record(tmp_path):
    import sat

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").symlink_to(victim)
    with pytest.raises(UserError, match="is a link"):
        sat.train("experiment=quickstart", output_dir=run)
    assert victim.read_text() == "precious\n"


def test_the_api_refuses_evaluate_into_a_training_runs_folder(tmp_path):
    import sat

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="holds a training run; evaluate.py writes its results into a folder of its own"):
        sat.evaluate("checkpoint=x.pt", output_dir=tmp_path / "run")
    assert not (tmp_path / "run" / ".hydra").exists()
