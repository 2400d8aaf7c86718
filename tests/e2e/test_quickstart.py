"""The README's comparison: on digits with 40% label noise SAT beats CE by a wide margin."""

from __future__ import annotations

import json

from conftest import run_entry


def test_quickstart_sat_beats_ce(quickstart_sweep, tmp_path):
    sweep, proc = quickstart_sweep
    summaries = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert set(summaries) == {"method-ce+seed-0", "method-sat+seed-0"}, proc.stdout
    ce, sat = summaries["method-ce+seed-0"], summaries["method-sat+seed-0"]
    assert ce["noise"]["realised_error"] > 0.3  # 40% redrawn uniformly over 10 classes: ~36% wrong
    ce_acc, sat_acc = ce["final"]["test/acc"], sat["final"]["test/acc"]
    assert sat_acc > 0.9 and sat_acc - ce_acc > 0.15, (ce_acc, sat_acc)
    # CE memorises the wrong labels; SAT's soft targets recover most of them
    assert ce["final"]["train/noisy_acc_given"] > 0.9
    assert sat["final"]["sat/label_recovery"] > 0.7

    # evaluate.py on the digits checkpoint agrees and reports the memorisation (the sweep
    # folder's path pastes unquoted)
    ce_run = sweep / "method-ce+seed-0"
    proc = run_entry("evaluate.py", f"checkpoint={ce_run}/checkpoints/last.pt", f"hydra.run.dir={tmp_path / 'eval'}",
                     cwd=tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dataset"] == "digits" and result["test/acc"] == ce_acc
    assert result["train_noisy/acc_given"] > 0.9 > result["train_noisy/acc_true"]


def test_the_sweep_ends_with_its_report(quickstart_sweep, tmp_path):
    """train.py -m prints the sweep's report when its last job ends, by the code of
    ``python -m sat.report SWEEP`` (the same table), and says where the figures are."""
    from sat.report import format_report, make_report

    sweep, proc = quickstart_sweep
    printed = proc.stdout[proc.stdout.index(f"sweep report (again, or while a sweep runs: python -m sat.report {sweep}):"):]
    again = format_report(make_report(sweep, tmp_path / "again"))
    body = again[:again.index("\nwrote ")]
    assert body in printed and "| ce |" in body and "| sat |" in body
    assert f"wrote {sweep / 'report'}/: " in printed and "test_error_vs_epoch.png" in printed
    assert (sweep / "report" / "test_error_vs_epoch.png").stat().st_size > 0
    assert (sweep / "report" / "comparison.md").read_text() == (tmp_path / "again" / "comparison.md").read_text()
