"""``dry_run=true`` (sat/cli/dry_run.py): a command, or every job of a sweep, checked as its
run would check it, before any data is read and with nothing written. In this process,
through the same function the entry points call (their wiring: tests/e2e/test_dry_run_cli.py)."""

from __future__ import annotations

import copy

import pytest
from conftest import CONF, TINY
from omegaconf import OmegaConf, open_dict, read_write
from omegaconf.errors import ValidationError

import sat
from sat.cli import dry_run
from sat.errors import UserError


def check(tmp_path, *args: str, config: str = "train") -> dry_run.Plan:
    folder = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
    return dry_run.check_command(CONF, config, [*args, f"{folder}={tmp_path}/out", "dry_run=true"])


def nothing_written(tmp_path) -> bool:
    return not (tmp_path / "out").exists()


def test_a_sweep_is_checked_job_by_job_each_refusal_one_line(tmp_path):
    plan = check(tmp_path, "-m", *TINY, "method=sat,sat_sce", "noise.rate=0.2,1.5")
    assert plan.multirun and [j.num for j in plan.jobs] == [0, 1, 2, 3]
    names = {j.folder.rsplit("/", 1)[-1]: j for j in plan.jobs}
    # the folders the sweep would make (sat/cli/sweeps.py names them)
    assert {(m, r) for m in ("sat", "sat_sce") for r in ("0.2", "1.5")} == \
        {(m, r) for m in ("sat", "sat_sce") for r in ("0.2", "1.5") for n in names
         if f"+method-{m}+" in n and f"+noise.rate-{r}+" in n and n.endswith("+seed-0")}
    assert all(j.folder.startswith(f"{tmp_path}/out/augment-none+dataset-synthetic+") for j in plan.jobs)
    for name, job in names.items():
        if "noise.rate-1.5" in name:
            assert str(job.refusal) == "noise.rate=1.5 is out of range; accepted: a number >= 0 and <= 1"
        else:
            assert job.refusal is None and "synthetic 3x8x8 (4 classes)" in job.line and "2 epochs x batch 64" in job.line
    assert nothing_written(tmp_path)
    lines = dry_run.format_plan(plan)
    assert lines[-1] == "4 job(s): 2 pass, 2 refused"
    assert sum("refused: noise.rate=1.5 is out of range" in line for line in lines) == 2


def test_a_single_run_says_what_it_would_run(tmp_path):
    (job,) = check(tmp_path, "experiment=quickstart").jobs
    assert job.refusal is None and job.folder == f"{tmp_path}/out"
    assert job.line.startswith("digits 1x8x8 (10 classes), SmallCNN ") and "SelfAdaptiveTraining" in job.line
    assert "100 epochs x batch 128" in job.line and "memory >= " in job.line
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("overrides,refusal", [
    # a value that acts only late in a run (the scheduler's first milestone)
    (["scheduler=step", "scheduler.gamma=abc"], "scheduler.gamma"),
    # SAT's start after the end of the run: refused before anything is built
    (["method=sat", "method.start_epoch=5"], "so SAT would never start"),
    # the memory the data and the model need, counted on the meta device
    (["dataset.num_train=100000000", "dataset.size=64"], "needs at least"),
    # a warm start from a file that is not there
    (["init_from=/nonexistent/best.pt"], "/nonexistent/best.pt' does not exist"),
    # labels to replay from a file that is not there, or is not a noise file
    (["noise=refined", "noise.from_file=/nonexistent/refined_labels.pt"],
     "noise.from_file='/nonexistent/refined_labels.pt' does not exist"),
    (["noise=refined", f"noise.from_file={CONF / 'train.yaml'}"], "is corrupted or not a noise file"),
])
def test_what_the_run_would_refuse_is_refused(tmp_path, overrides, refusal):
    (job,) = check(tmp_path, *TINY, *overrides).jobs
    assert job.refusal is not None and refusal in str(job.refusal), job.refusal
    assert "\n" not in str(job.refusal) and nothing_written(tmp_path)


def test_a_composition_error_of_one_job_is_that_job_s_refusal(tmp_path):
    # Hydra's own sweeper gives every job every key: ce takes no start_epoch (TINY's) or alpha
    plan = check(tmp_path, "-m", *TINY, "method=ce,sat", "method.alpha=0.5", "hydra/sweeper=basic")
    refusals = {next(o for o in j.overrides if o.startswith("method=")): j.refusal for j in plan.jobs}
    assert refusals["method=sat"] is None
    assert str(refusals["method=ce"]).startswith("method.start_epoch is not a key of method")


def test_the_sweeper_s_method_keys_go_to_the_jobs_whose_method_takes_them(tmp_path):
    """The jobs are the sweeper's own (hydra/sweeper=sat, the default): ce's job runs
    without SAT's keys; a key no method of the sweep takes refuses the command."""
    plan = check(tmp_path, "-m", *TINY, "method=ce,sat", "method.alpha=0.5")
    jobs = {next(o for o in j.overrides if o.startswith("method=")): j for j in plan.jobs}
    assert all(j.refusal is None for j in plan.jobs)
    assert "method.alpha=0.5" in jobs["method=sat"].overrides
    assert not any(o.startswith(("method.alpha", "method.start_epoch")) for o in jobs["method=ce"].overrides)
    with pytest.raises(UserError, match="method.alfa is not a key of method; did you mean method.alpha"):
        check(tmp_path, "-m", *TINY, "method=ce,sat", "method.alfa=0.5")
    assert nothing_written(tmp_path)


def test_the_slurm_launcher_is_named_and_nothing_is_submitted(tmp_path):
    plan = check(tmp_path, "-m", *TINY, "seed=0,1,2", "hydra/launcher=slurm")
    assert plan.launcher == "slurm" and len(plan.jobs) == 3 and not plan.refused
    assert nothing_written(tmp_path)


def test_the_sweepers_own_grid_is_expanded(tmp_path):
    """``dd_resnet18_cifar10`` declares its 128-job grid in ``hydra.sweeper.params``; a
    value on the command line replaces it, as Hydra's sweeper does."""
    plan = check(tmp_path, "-m", "experiment=dd_resnet18_cifar10", "model.width=1,2")
    assert [j.folder.rsplit("/", 1)[-1] for j in plan.jobs] == [
        f"method-{m}+model.width-{w}+seed-0" for m in ("ce", "sat") for w in (1, 2)]
    assert not plan.refused and all("cifar10 3x32x32" in j.line and "4000 epochs" in j.line for j in plan.jobs)
    # a value that makes one job of the grid refuse: SAT's width-scaled start beyond a shortened run
    plan = check(tmp_path, "-m", "experiment=dd_resnet18_cifar10", "model.width=1,2", "trainer.epochs=3")
    assert [j.num for j in plan.refused] == [2, 3] and "SAT would never start" in str(plan.refused[0].refusal)


def test_dry_run_cannot_be_swept():
    with pytest.raises(UserError, match="dry_run cannot be swept"):
        dry_run.requested(["-m", "dry_run=true,false"])
    assert not dry_run.requested(["dry_run=false"]) and not dry_run.requested(["--cfg", "job", "dry_run=true"])


SWEEPS = [  # group choices, values, added (+, ++) and deleted (~) keys, a package (@), the sweeper's own grid
    ["experiment=quickstart", "method=ce,sat", "optimizer=adam,sgd", "noise.rate=0.2,0.4", "optimizer.lr=0.01",
     "++trainer.deterministic=true", "+method.foo=1"],
    ["experiment=dd_resnet18_cifar10", "model.width=1,3", "~logger", "hydra/launcher=local"],
    ["experiment=quickstart", "method.start_epoch=auto", "auto_start@method.auto_start=val_acc,prediction_changes"],
]


@pytest.mark.parametrize("args", SWEEPS, ids=[" ".join(s[:2]) for s in SWEEPS])
def test_the_shared_composition_equals_hydra_s_own(args):
    """The jobs that choose the same group options share one composition
    (``_Composer``); each job's config must equal the one Hydra's launcher composes
    (``load_sweep_config``), the hydra node included."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from sat.report.grid import expand_grid

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="train"):
        hydra = GlobalHydra.instance().hydra
        master = hydra.compose_config("train", [*args, "hydra.mode=MULTIRUN"], run_mode=RunMode.MULTIRUN)
        params = OmegaConf.select(master, "hydra.sweeper.params", default=None)
        grid = expand_grid(OmegaConf.to_container(params) if params is not None else {},
                           list(master.hydra.overrides.task))
        composer = dry_run._Composer(hydra, master)
        assert len(grid) > 1
        for num, job in enumerate(grid):
            ours = composer.job(job, num)
            theirs = hydra.config_loader.load_sweep_config(master, list(job))
            OmegaConf.set_readonly(theirs.hydra, False)
            with read_write(theirs), open_dict(theirs):
                theirs.hydra.job.id = theirs.hydra.job.num = num
            assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(theirs), job
            assert OmegaConf.get_type(ours) is OmegaConf.get_type(theirs)
            assert OmegaConf.is_struct(ours) and OmegaConf.is_struct(theirs)
            with pytest.raises(ValidationError):  # the schema's types hold: a wrong type fails as in Hydra's
                copy.deepcopy(ours).trainer.epochs = "abc"
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dry") / "run"
    sat.train([*TINY, "trainer.checkpoint_every=1"], output_dir=run)
    return run


def test_evaluate_and_attack_check_their_checkpoints_without_data(tiny_run, tmp_path):
    last = tiny_run / "checkpoints" / "last.pt"
    (job,) = check(tmp_path, f"checkpoint={last}", "report=label_errors", config="evaluate").jobs
    assert job.refusal is None and job.line.startswith(f"report=label_errors of {last}: synthetic, ")
    (job,) = check(tmp_path, f"checkpoints={tiny_run}", "epochs=1-2", "attack=pgd", config="attack").jobs
    assert job.refusal is None and job.line.startswith("attack=pgd on 2 checkpoint(s): ")
    (job,) = check(tmp_path, f"checkpoints={tiny_run}", "epochs=71-100", config="attack").jobs
    assert "epochs='71-100' matches none of the checkpoints" in str(job.refusal)
    (job,) = check(tmp_path, f"checkpoint={tmp_path}/missing.pt", config="evaluate").jobs
    assert "does not exist" in str(job.refusal)
    assert nothing_written(tmp_path)
    assert sorted(p.name for p in tiny_run.iterdir()) == sorted(p.name for p in tiny_run.iterdir()
                                                                  if p.name != "evaluations")


def test_a_continuation_with_other_settings_is_refused(tiny_run, tmp_path):
    plan = dry_run.check_command(CONF, "train", [*TINY, "trainer.checkpoint_every=1", "trainer.epochs=3",
                                                 f"hydra.run.dir={tiny_run}", "dry_run=true"])
    assert "was trained with other settings: " in str(plan.jobs[0].refusal)
    assert "trainer.epochs (2 -> 3)" in str(plan.jobs[0].refusal)
    (job,) = dry_run.check_command(CONF, "train", [*TINY, "trainer.checkpoint_every=1", f"hydra.run.dir={tiny_run}",
                                                   "dry_run=true"]).jobs
    assert job.refusal is None and job.line.endswith(f"continues {tiny_run}/checkpoints/last.pt")


def test_the_python_api_checks_without_running(tmp_path):
    plan = sat.train([*TINY, "dry_run=true"], output_dir=tmp_path / "run")
    assert plan["dry_run"] is True and plan["output_dir"] == str(tmp_path / "run") and "synthetic" in plan["plan"]
    with pytest.raises(UserError, match="noise.rate=2.0 is out of range"):
        sat.train([*TINY, "noise.rate=2", "dry_run=true"], output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_report_s_dry_run_reads_and_groups_and_writes_nothing(tiny_run, capsys):
    from sat.report.cli import main

    assert main([str(tiny_run), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"1 run(s) below {tiny_run} in 1 group(s)")
    assert out.strip().endswith(f"dry run: nothing written (the tables and figures would go to {tiny_run}/report/)")
    assert not (tiny_run / "report").exists()
