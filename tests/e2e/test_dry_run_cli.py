"""``dry_run=true`` through the real entry point: a Slurm sweep checked job by job, nothing
submitted and nothing written, exit status 2 when a job is refused (0 when all pass); the
checks themselves are tested in this process (tests/integration/test_dry_run.py)."""

from __future__ import annotations

from conftest import TINY, run_entry


def test_a_slurm_sweep_is_checked_and_nothing_is_submitted_or_written(tmp_path):
    proc = run_entry("train.py", "-m", *TINY, "method=sat,sat_sce", "noise.rate=0.2,1.5", "hydra/launcher=slurm",
                     "dry_run=true", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: 2 of 4 jobs of the sweep refused (each one's line above)"]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("dry run of train.py -m in ") and "4 job(s) for hydra/launcher=slurm" in lines[0]
    jobs = {line.split(": ", 1)[0].split()[-1]: line.split(": ", 1)[1] for line in lines[1:-1]}  # folder: plan
    assert sorted(jobs) == sorted(f"augment-none+dataset-synthetic+method.start_epoch-1+method-{m}+model.width-8+"
                                  f"model-cnn+noise.rate-{r}+trainer.batch_size-64+trainer.epochs-2+seed-0"
                                  for m in ("sat", "sat_sce") for r in ("0.2", "1.5"))
    for folder, plan in jobs.items():
        assert plan.startswith("refused: noise.rate=1.5 is out of range" if "rate-1.5" in folder else
                               "synthetic 3x8x8 (4 classes), SmallCNN 6,220 parameters")
    assert lines[-1] == "4 job(s): 2 pass, 2 refused"
    assert list(tmp_path.iterdir()) == []  # no multirun/ folder, no Slurm logs


def test_a_run_that_passes_exits_0(tmp_path):
    proc = run_entry("train.py", "experiment=quickstart", "dry_run=true", cwd=tmp_path)
    assert proc.stderr == "" and "outputs/quickstart/" in proc.stdout and "SelfAdaptiveTraining" in proc.stdout
    assert list(tmp_path.iterdir()) == []
