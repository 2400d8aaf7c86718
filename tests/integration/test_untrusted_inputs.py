"""Issue 19, items 3-5: sweep jobs that never share a folder, settings that must agree,
and bounds on every size (memory bombs run in a subprocess under an address-space cap,
so a regression fails the test instead of taking the machine)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hostile import refused, run_capped
from omegaconf import OmegaConf
from run_folders import make_run

from sat.config.fingerprint import check_fingerprints, check_same_run, config_fingerprint, differing_settings
from sat.errors import UserError
from sat.run.checkpoint import load_checkpoint, save_checkpoint

# --- item 3: sweep jobs that differ only in settings left out of folder names -------------------


@pytest.mark.parametrize("key", ["noise.from_file", "dataset.root", "paths.data_dir"])
def test_jobs_differing_only_in_a_file_location_get_their_own_folders(compose_cfg, key):
    def subdir(value: str) -> str:
        cfg = compose_cfg("train", ["method=ce", f"{key}={value}", "device=cpu"], return_hydra_config=True)
        return OmegaConf.select(cfg, "hydra.sweep.subdir")

    a, b = subdir("/data/A.pt"), subdir("/data/B.pt")
    assert a != b and a.startswith("method-ce+seed-0+files-") and "=" not in a + b and "," not in a + b
    assert subdir("/data/A.pt") == a  # the same job (a requeue) finds its folder again
    plain = compose_cfg("train", ["method=ce", "device=cpu", "trainer.num_threads=1"], return_hydra_config=True)
    assert OmegaConf.select(plain, "hydra.sweep.subdir") == "method-ce+seed-0"  # speed settings still leave no trace


CIFAR10 = {"_target_": "sat.data.datasets.CIFAR", "name": "cifar10", "root": "/data"}
UNIFORM = {"_target_": "sat.data.noise.label.UniformLabelNoise"}


def _roles(config: dict) -> dict:
    """Every key's roles, as the train task reads them (sat.config.roles)."""
    from sat.config.build import USER_CONFIG
    from sat.config.schema import TrainConfig

    return USER_CONFIG.roles(config, TrainConfig)


def test_a_finished_run_with_other_settings_is_not_this_commands_result(tmp_path):
    stored = {"seed": 0, "noise": {**UNIFORM, "rate": 0.4, "from_file": "A.pt"},
              "trainer": {"epochs": 3, "num_threads": 1, "async_checkpoint": True, "compile_mode": "default"},
              "paths": {"output_dir": "/runs/x"}, "dataset": CIFAR10, "loader": {"num_workers": 2, "decode": "auto"},
              "objective": "at_best_val/val/acc"}
    same = json.loads(json.dumps(stored))
    same["trainer"].update(num_threads=4, async_checkpoint=False, compile_mode="max-autotune")
    same["loader"].update(num_workers=0, decode="cpu")
    same["paths"]["output_dir"], same["objective"] = "/elsewhere", "final/val/acc"
    check_same_run(same, stored, tmp_path, _roles(same))  # speed and folder settings do not make another run
    other = json.loads(json.dumps(stored))
    other["noise"]["from_file"] = "B.pt"
    with pytest.raises(UserError, match=r"finished run with other settings: noise\.from_file \(A\.pt -> B\.pt\)"):
        check_same_run(other, stored, tmp_path, _roles(other))
    other["dataset"]["root"] = "/other"
    assert differing_settings(other, stored, _roles(other)) == ["dataset.root (/data -> /other)",
                                                                "noise.from_file (A.pt -> B.pt)"]


# --- item 5: settings that differ between the processes of one DDP run --------------------------


@pytest.mark.parametrize("key,value", [("seed", 1), ("noise.seed", 5), ("method.alpha", 0.8), ("optimizer.lr", 1.0),
                                       ("noise.rate", 0.2), ("trainer.eval_every", 2)])
def test_the_fingerprint_tells_ranks_with_other_settings_apart(key, value):
    base = {"seed": 0, "noise": {**UNIFORM, "seed": 0, "rate": 0.4}, "method": {"alpha": 0.9},
            "optimizer": {"lr": 0.1}, "trainer": {"eval_every": 1, "num_threads": 2}, "paths": {"output_dir": "/r/0"},
            "dataset": CIFAR10, "loader": {"num_workers": 2}}
    other = json.loads(json.dumps(base))
    node, _, leaf = key.rpartition(".")
    (other[node] if node else other)[leaf] = value
    roles = _roles(base)
    assert config_fingerprint(other, roles) != config_fingerprint(base, roles)
    with pytest.raises(UserError, match=r"rank\(s\) 1 differ from rank 0"):
        check_fingerprints([config_fingerprint(base, roles), config_fingerprint(other, roles)])
    # what may differ between processes: their folders, a node's data folder, thread and worker counts
    local = json.loads(json.dumps(base))
    local["paths"]["output_dir"], local["dataset"]["root"], local["trainer"]["num_threads"] = "/r/1", "/scratch", 8
    local["loader"]["num_workers"] = 5
    check_fingerprints([config_fingerprint(base, roles), config_fingerprint(local, roles)])


# --- item 5: sat.report ----------------------------------------------------------------------------


def _edit_config(run: Path, **values) -> None:
    path = run / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(path)
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    OmegaConf.save(cfg, path)


def test_the_report_never_resolves_environment_variables_from_a_folder(tmp_path, monkeypatch):
    from sat.report import make_report

    monkeypatch.setenv("SAT_TEST_SECRET", "hunter2")
    for seed in (0, 1):
        run = make_run(tmp_path / "runs", f"seed-{seed}", seed=seed, status="running")  # (no figures: faster)
        _edit_config(run, **{"method.alpha": "${oc.env:SAT_TEST_SECRET}", "name": "${oc.env:SAT_TEST_SECRET,x}"})
    report = make_report(tmp_path / "runs", tmp_path / "out")
    written = "".join(f.read_text(errors="replace") for f in report.files if f.suffix in (".csv", ".md"))
    assert "hunter2" not in written and "oc.env:SAT_TEST_SECRET" in written


def test_the_report_never_groups_runs_on_other_data_as_seeds(tmp_path):
    from sat.report import group_runs, read_runs

    for root in ("A", "B"):
        _edit_config(make_run(tmp_path, f"root-{root}", seed=0), **{"dataset.root": f"/data/{root}"})
    groups = group_runs(read_runs(tmp_path)).groups
    assert len(groups) == 2 and all(len(g.runs) == 1 for g in groups)
    # a root given through paths.data_dir (an interpolation of an ignored path) too
    for data_dir in ("/x", "/y"):
        run = make_run(tmp_path / "via", f"dir-{data_dir[1:]}", seed=0)
        _edit_config(run, **{"paths.data_dir": data_dir, "dataset.root": "${paths.data_dir}"})
    assert len(group_runs(read_runs(tmp_path / "via")).groups) == 2


@pytest.mark.e2e  # starts a process
def test_a_huge_declared_sweep_is_refused_with_bounded_memory(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep, "seed-0")
    OmegaConf.save(OmegaConf.create({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "params": {"seed": "range(0,30000000)"}},
        "overrides": {"task": []}}}), sweep / "multirun.yaml")
    proc = run_capped(f"""
        from sat.report import make_report
        from sat.errors import UserError
        try:
            make_report({str(sweep)!r}, {str(tmp_path / 'out')!r})
        except UserError as e:
            print("refused:", e)
    """)
    refused(proc, "30,000,000 jobs")


def test_the_report_on_a_read_only_folder_is_one_line(tmp_path):
    from sat.report import main

    make_run(tmp_path / "runs", "seed-0")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as a user who may write anywhere (root)")
        assert main([str(tmp_path / "runs"), "--out", str(out / "report")]) == 2
    finally:
        out.chmod(0o700)


def test_the_report_on_an_unwritable_out_is_one_line(tmp_path, capsys):
    """The same refusal where permission bits do not bind (root): --out under a file."""
    from sat.report import main

    make_run(tmp_path / "runs", "seed-0")
    (tmp_path / "file").write_text("")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "file" / "report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write the report into") and "--out" in err[0]


# --- item 4: resource bombs ------------------------------------------------------------------------


# Each case prints "<case>: <result>"; one capped interpreter for all (torch imports once).
BOMBS = """
import json
from sat.errors import UserError

def case(name, attack):
    try:
        print(name + ":", json.dumps(attack()))
    except UserError as e:
        print(name + ": refused:", e)

from sat.tasks.attack import select_checkpoints
case("epochs", lambda: [p.name for p in select_checkpoints(None, RUN, "1-99999999999")])
case("epochs_none", lambda: select_checkpoints(None, RUN, "100-99999999999"))

import torch
from sat.data.datasets import Synthetic
from sat.models import ResNet
from sat.tasks.budget import check_memory

def fits(width, source=None):
    check_memory("train", device=torch.device("cpu"), input_shape=(3, 32, 32), batch_size=128, source=source,
                 build_model=lambda: ResNet(num_classes=10, input_shape=(3, 32, 32), width=width),
                 what=f"model.width={width}")
    return "fits"

case("small_model", lambda: fits(4))
case("wide_model", lambda: fits(20000))
case("small_data", lambda: fits(4, Synthetic()))
case("big_data", lambda: fits(4, Synthetic(num_train=20_000_000)))
"""


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, str]:
    """What each memory bomb of :data:`BOMBS` gave, under the address-space cap."""
    run = tmp_path_factory.mktemp("bombs") / "run"
    (run / "checkpoints").mkdir(parents=True)
    for epoch in (3, 7):
        (run / "checkpoints" / f"epoch_{epoch}.pt").write_bytes(b"")
    proc = run_capped(f"RUN = {str(run)!r}\n" + BOMBS)
    assert proc.returncode == 0 and "MemoryError" not in proc.stderr, proc.stderr[-3000:]
    return dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)


@pytest.mark.e2e  # starts a process
def test_an_epoch_range_is_never_materialised(bombs):
    assert bombs["epochs"] == json.dumps(["epoch_3.pt", "epoch_7.pt"])
    assert bombs["epochs_none"].startswith("refused: epochs='100-99999999999' matches none") and "3, 7" in bombs["epochs_none"]


def test_epochs_with_one_checkpoint_is_checked_not_ignored():
    from sat.tasks.attack import select_checkpoints

    with pytest.raises(UserError, match="is not an epoch range"):
        select_checkpoints("x.pt", None, "abc")
    with pytest.raises(UserError, match="is one file"):
        select_checkpoints("x.pt", None, "71-100")
    assert select_checkpoints("x.pt", None, None) == [Path("x.pt")]


@pytest.mark.e2e  # starts a process
def test_a_model_too_big_for_memory_is_refused_with_its_size(bombs):
    assert bombs["small_model"] == '"fits"'
    assert bombs["wide_model"].startswith("refused: model.width=20000 needs at least ")
    assert "1,089,605,140,010 parameters" in bombs["wide_model"] and "accepted: a smaller model" in bombs["wide_model"]


@pytest.mark.e2e  # starts a process
def test_a_synthetic_dataset_too_big_for_memory_is_refused_before_generating(bombs):
    assert bombs["small_data"] == '"fits"'
    assert bombs["big_data"].startswith("refused: model.width=4 needs at least") and "(data 17.9, " in bombs["big_data"]
    assert "dataset.num_train" in bombs["big_data"]


# --- item 5: crafted checkpoint values -----------------------------------------------------------


def _minimal_state(**changes) -> dict:
    state = {"epoch": 1, "model": {}, "config": {}, "noise_sha256": "0" * 64, "optimizer": {}, "method": {}}
    return {**state, **changes}


def test_a_checkpoint_with_a_negative_epoch_is_refused(tmp_path):
    save_checkpoint(_minimal_state(epoch=-5), tmp_path, ["last"])
    with pytest.raises(UserError, match="epoch=-5"):
        load_checkpoint(tmp_path / "last.pt")
    save_checkpoint(_minimal_state(epoch=0), tmp_path / "ok", ["last"])
    assert load_checkpoint(tmp_path / "ok" / "last.pt")["epoch"] == 0


# --- item 7: crafted stored configs give one line, not a traceback --------------------------------


@pytest.mark.parametrize("node,match", [
    ({"_target_": "sat.models.SmallCNN", "bogus": 1}, r"model in the checkpoint's stored config does not fit "
                                                      r"sat\.models\.SmallCNN .*bogus"),
    ({"_target_": "sat.models.SmallCNN", "width": {"_target_": "sat.models.SmallCNN"}},
     r"model\.width in the checkpoint's stored config is an object node"),
    ({"_target_": "sat.models.SmallCNN", "width": "abc"}, r"model\.width='abc' is not an integer"),
])
def test_a_crafted_model_node_is_one_line(node, match):
    from sat.config import trust

    with pytest.raises(UserError, match=match) as e:
        trust.build(node, "model", "model", num_classes=4, input_shape=(3, 8, 8))
    assert "\n" not in str(e.value)


def test_a_crafted_dataset_node_with_a_private_argument_is_one_line():
    from sat.config import trust

    with pytest.raises(UserError, match=r"dataset in the checkpoint's stored config does not fit .*_foo"):
        trust.build({"_target_": "sat.data.datasets.Synthetic", "_foo": 1}, "dataset", "dataset")


def test_a_constructor_failing_on_a_crafted_value_is_one_line():
    from sat.config import trust

    class Fragile:
        def __init__(self, n: int = 1):
            [0][n]  # an IndexError for a crafted n

    trust.register("tests.Fragile", Fragile, "component")
    try:
        with pytest.raises(UserError, match=r"component: tests\.Fragile cannot be built .*IndexError"):
            trust.build({"_target_": "tests.Fragile", "n": 5}, "component", "component")
    finally:
        trust._registered.pop("tests.Fragile")


@pytest.mark.parametrize("packages,match", [([".myplug"], "not a package name"), (["my plug"], "not a package name"),
                                            (["torch"], "a library sat runs on"), (["os"], "a library sat runs on"),
                                            (["torch.nn"], "a library sat runs on"), (["sat.models"], "sat's classes")])
def test_trusted_packages_name_only_the_users_own_packages(packages, match):
    from sat.config import trust

    with pytest.raises(UserError, match=match):
        trust.trusted_package_names(packages)
    assert trust.trusted_package_names(["myplug", "lab.models"]) == ["myplug", "lab.models"]


def test_reading_settings_never_resolves_environment_variables(monkeypatch):
    from sat.report.settings import read_settings

    monkeypatch.setenv("SAT_TEST_SECRET", "hunter2")
    cfg = OmegaConf.create({"seed": 1, "noise": {"seed": "${seed}"},
                            "method": {"alpha": "${oc.env:SAT_TEST_SECRET}", "beta": "${ oc.env:SAT_TEST_SECRET,x}",
                                       "rate": "${oc.select:noise.seed,0}"}})
    settings, derived, _ = read_settings(cfg)
    assert settings["method.alpha"] == "${oc.env:SAT_TEST_SECRET}" and "hunter2" not in str(settings)
    assert settings["noise.seed"] == 1 and settings["method.rate"] == 1 and derived == {"noise.seed", "method.rate"}
