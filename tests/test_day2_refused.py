"""A command refused before its run starts leaves no run folder (a sweep job: one line
in the sweep's refused.log), through the real entry points."""

from __future__ import annotations

from conftest import TINY, run_entry


def test_a_refused_run_leaves_no_folder(tmp_path):
    proc = run_entry("train.py", *TINY, "noise.rate=1.5", cwd=tmp_path, check=False)  # Hydra's own outputs/<date>/<time>
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: noise.rate=1.5")
    assert list(tmp_path.iterdir()) == []
    proc = run_entry("evaluate.py", "checkpoint=/tmp/nope.pt", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and list(tmp_path.iterdir()) == []


def test_a_refused_sweep_job_is_a_line_of_the_sweep_s_log(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_entry("train.py", "-m", *TINY, "noise.rate=1.5", f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert sorted(p.name for p in sweep.iterdir()) == ["multirun.yaml", "refused.log"]
    (line,) = (sweep / "refused.log").read_text().splitlines()
    assert line.endswith("+seed-0: error: noise.rate=1.5 is out of range; accepted: a number >= 0 and <= 1")
