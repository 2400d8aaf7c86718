"""One owner per concern: the bugs that several hand-kept copies of one idea caused, each
checked through the owner that now decides it (key roles, process identity, the
method's own soft labels, constructor annotations)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_entry
from omegaconf import OmegaConf
from run_folders import make_run

from sat.errors import UserError
from sat.parallel.identity import is_rank0, launched_by, process_rank
from sat.report import make_report

NEUTRAL_CHANGES = {"trainer.async_checkpoint": False, "trainer.compile_mode": "max-autotune",
                   "objective": "final/val/acc", "loader.num_workers": 3, "loader.decode": "cpu",
                   "loader.prefetch_factor": 4, "trainer.progress": "none", "device": "cuda"}


def _set(config: Path, key: str, value) -> None:
    cfg = OmegaConf.load(config)
    OmegaConf.update(cfg, key, value, force_add=True)
    OmegaConf.save(cfg, config)


def test_the_report_groups_runs_that_differ_only_in_neutral_keys(tmp_path):
    """Every key the schema declares neutral stays out of the report's grouping (it used
    to keep its own list, which missed async_checkpoint, compile_mode, objective and the
    loader's speed settings)."""
    for seed in (0, 1):
        run = make_run(tmp_path, f"seed-{seed}", seed=seed)
        if seed:
            for key, value in NEUTRAL_CHANGES.items():
                _set(run / ".hydra" / "config.yaml", key, value)
    report = make_report(tmp_path)
    assert len(report.grouping.groups) == 1 and report.grouping.columns == []
    assert len(report.grouping.groups[0].runs) == 2
    # a key that changes results still tells runs apart
    _set(tmp_path / "seed-1" / ".hydra" / "config.yaml", "loader.kind", "stream")
    assert make_report(tmp_path, out=tmp_path / "again").grouping.columns == ["loader.kind"]


@pytest.mark.parametrize("environ,launcher,rank", [
    ({}, None, 0),
    ({"RANK": "2", "WORLD_SIZE": "4"}, "torchrun", 2),
    ({"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2"}, "slurm", 1),  # srun without torchrun
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2"}, "slurm", 0),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, None, 0),  # a batch script outside srun: one process
])
def test_one_function_says_which_process_this_is(environ, launcher, rank):
    from sat.parallel.group import launch_from_env

    assert launched_by(environ) == launcher and process_rank(environ) == rank and is_rank0(environ) == (rank == 0)
    launch = launch_from_env({**environ, "MASTER_ADDR": "n1", "SLURM_JOB_ID": "7"})  # no scontrol call
    assert (launch.rank if launch else 0) == rank and (launch.launcher if launch else None) == launcher


def test_only_rank0_under_srun_says_how_to_continue_and_removes_a_refused_folder(tmp_path, monkeypatch, caplog):
    """Under ``hydra/launcher=slurm_ddp`` (srun, no torchrun) every task used to print the
    continue hint and could remove a refused run folder at the same time."""
    from sat import cli

    folder = tmp_path / "refused"
    (folder / ".hydra").mkdir(parents=True)
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    cli._drop_refused(str(folder), UserError("bad"))
    assert folder.is_dir()  # another task's: rank 0 alone removes it
    monkeypatch.setenv("SLURM_PROCID", "0")
    cli._drop_refused(str(folder), UserError("bad"))
    assert not folder.exists()


def test_the_label_error_report_of_elr_plus_asks_the_method_for_its_targets(compose_cfg, tmp_path):
    """ELR+ keeps its targets as (2, N, C): the report read them from the checkpoint's
    state by hand, found the shape wrong and silently fell back to model probabilities."""
    from sat.tasks.evaluate import run as evaluate
    from sat.tasks.train import run as train

    run = tmp_path / "run"
    tiny = [o for o in TINY if not o.startswith("method.start_epoch")]
    train(compose_cfg("train", [*tiny, "method=elr_plus", "logger=none", f"paths.output_dir={run}"]))
    out = tmp_path / "eval"
    result = evaluate(compose_cfg("evaluate", [f"checkpoint={run}/checkpoints/last.pt", "report=label_errors",
                                               "device=cpu", f"paths.output_dir={out}"]))
    assert result["source"] == "soft targets"
    saved = torch.load(run / "soft_labels.pt")
    flagged = int((saved["soft_labels"].argmax(1) != saved["given_labels"]).sum())
    rows = (out / "label_errors.csv").read_text().splitlines()[1:]
    assert len(rows) == flagged  # the report flags what training's soft_labels.pt says


@pytest.mark.e2e  # starts a process
def test_start_epoch_auto_runs_through_the_entry_point(tmp_path):
    """The README's ``method.start_epoch=auto``: the value checks read the constructor's
    annotation, which now says what it accepts (``int | Literal["auto"]``)."""
    run = tmp_path / "auto"
    proc = run_entry("train.py", "experiment=quickstart", "method.start_epoch=auto", "trainer.epochs=4",
                     "model.width=4", "logger=none", "device=cpu", f"hydra.run.dir={run}", cwd=tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished", proc.stderr
    decided = summary["method"]["auto_start"]
    assert summary["method"]["start_epoch"] == decided["start_epoch"] and 1 <= decided["start_epoch"] <= 2, decided
    assert decided["reason"]  # why, or that half the run (the latest start) was reached
