"""Evaluation and attack sweeps: jobs named by what varies in one short level, one
combined table at the sweep's root, results over several checkpoints named by their
epochs, AutoAttack's stages printed (through the real attack.py and evaluate.py)."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import TINY, run_entry

import sat
from sat.cli.sweeps import job_name
from sat.tasks.attack import _print_table


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("sweeps") / "run"
    sat.train([*TINY, "trainer.epochs=3", "trainer.checkpoint_every=1", "logger=none"], output_dir=run)
    return run


def test_job_names_keep_what_the_sweep_varies(tmp_path, compose_cfg):
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: ['checkpoint=a/r1/checkpoints/epoch_3.pt,b/r2/checkpoints/last.pt', "
        "'attack=pgd', 'attack.eps=2/255,8/255', 'device=cpu']\n")
    job = ["checkpoint=b/r2/checkpoints/last.pt", "attack=pgd", "attack.eps=8/255", "device=cpu"]
    root = compose_cfg("attack", job)  # the job's config: the roles of its keys (device is neutral)
    assert job_name(job, str(tmp_path), _root_=root) == "r2.last+eps-8_255"
    assert job_name(job, _root_=root) == "r2.last+attack-pgd+eps-8_255"  # no sweep record: every setting but neutral ones


def test_attack_sweep_over_checkpoints_and_eps_writes_one_table(run_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_entry("attack.py", "-m", f"checkpoint={run_dir}/checkpoints/epoch_2.pt,{run_dir}/checkpoints/epoch_3.pt",
                     "attack=pgd", "attack.eps=2/255,8/255", "attack.steps=2", "num_samples=32", "device=cpu",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["run.epoch_2+eps-2_255", "run.epoch_2+eps-8_255", "run.epoch_3+eps-2_255", "run.epoch_3+eps-8_255"]
    rows = list(csv.DictReader(open(sweep / "results.csv")))
    assert sorted((r["job"], int(r["epoch"])) for r in rows) == [(j, int(j[10])) for j in jobs]
    assert sorted({round(float(r["eps"]), 6) for r in rows}) == [round(2 / 255, 6), round(8 / 255, 6)]
    for r in rows:  # every row says the attack's strength: the step relative to eps (pgd: 0.007 at 0.031), steps
        assert float(r["step_size"]) == pytest.approx(float(r["eps"]) * 0.007 / 0.031) and r["steps"] == "2"
    for r in rows:
        job = json.loads((sweep / r["job"] / "robustness.json").read_text())["rows"][0]
        assert float(r["robust"]) == pytest.approx(job["robust"]) and r["run"] == "run"
    md = (sweep / "results.md").read_text().splitlines()
    assert md[0].startswith("| job | run | epoch") and "| step_size | steps |" in md[0] and len(md) == 2 + len(rows)
    assert (sweep / "robust_accuracy_vs_eps.png").stat().st_size > 0
    assert f"sweep results: {sweep / 'results.csv'}" in proc.stdout


def test_evaluate_sweep_over_checkpoints_writes_one_table(run_dir, tmp_path):
    sweep = tmp_path / "sweep"
    run_entry("evaluate.py", "-m", f"checkpoint={run_dir}/checkpoints/epoch_1.pt,{run_dir}/checkpoints/last.pt",
              "device=cpu", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["run.epoch_1", "run.last"]
    rows = list(csv.DictReader(open(sweep / "results.csv")))
    assert [(r["job"], int(r["epoch"])) for r in rows] == [("run.epoch_1", 1), ("run.last", 3)]
    assert all(0 <= float(r["test/acc"]) <= 1 for r in rows)
    assert (sweep / "accuracy_vs_checkpoint.png").stat().st_size > 0


def test_a_result_over_several_checkpoints_is_named_by_their_epochs(run_dir, tmp_path):
    run_entry("attack.py", f"checkpoints={run_dir}", "epochs=2-3", "attack=pgd", "attack.steps=2", "num_samples=16",
              "device=cpu", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    (beside,) = (run_dir / "evaluations").glob("epochs_2-3.robustness-pgd*.json")
    assert [r["epoch"] for r in json.loads(beside.read_text())["rows"]] == [2, 3]


def test_autoattack_s_accuracy_after_each_attack_is_printed(capsys):
    row = {"checkpoint": "c.pt", "epoch": 7, "attack": "autoattack", "samples": 100, "natural": 0.9, "apgd-ce": 0.5,
           "apgd-t": 0.45, "fab-t": 0.44, "square": 0.43, "robust": 0.43, "eps": 8 / 255}
    _print_table([row], row)
    header, line = capsys.readouterr().out.splitlines()
    assert header.split()[:6] == ["epoch", "natural", "apgd-ce", "apgd-t", "fab-t", "square"]
    assert line.split() == ["7", "90.00%", "50.00%", "45.00%", "44.00%", "43.00%", "43.00%"]
