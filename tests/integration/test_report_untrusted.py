"""``python -m sat.report`` on a folder someone else wrote (issue 27, items 2, 3, 5, 14):
its config's text never resolves an environment variable, its report folder's links are
never written through, a stale offline evaluation is never shown as the final weights',
and a run killed without a word is told from one that is training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile import within
from omegaconf import OmegaConf
from run_folders import make_run

from sat.errors import UserError

SECRET = "hunter2-sat-test"


def _set(run: Path, key: str, text: str) -> None:
    """Put ``text`` verbatim (as YAML's plain scalar: backslashes kept) at ``key`` of the run's config."""
    path = run / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(path)
    OmegaConf.update(cfg, key, "PLACEHOLDER", force_add=True)
    OmegaConf.save(cfg, path)
    path.write_text(path.read_text().replace("PLACEHOLDER", text))


@pytest.mark.parametrize("backslashes", [0, 1, 2, 3])
def test_no_number_of_backslashes_makes_the_report_read_an_environment_variable(tmp_path, monkeypatch, backslashes):
    from sat.report import format_report, make_report

    monkeypatch.setenv("SAT_TEST_SECRET", SECRET)
    for seed in (0, 1):
        run = make_run(tmp_path / "runs", f"seed-{seed}", seed=seed, status="running")  # (no figures: faster)
        _set(run, "method.alpha", "\\" * backslashes + "${oc.env:SAT_TEST_SECRET}")
        _set(run, "name", "'" + "\\" * backslashes + "${oc.env:SAT_TEST_SECRET,x}'")
    report = make_report(tmp_path / "runs", tmp_path / "out")
    written = {f.name: f.read_text(errors="replace") for f in report.files if f.suffix in (".csv", ".md")}
    assert {"runs.csv", "comparison.md", "comparison.csv"} <= set(written)
    for name, text in {**written, "printed table": format_report(report)}.items():
        assert SECRET not in text, name
    assert all("oc.env:SAT_TEST_SECRET" in r.settings["method.alpha"] for r in report.runs)  # kept as its text


# --- item 3: the report's own files, never through a link ------------------------------------


@pytest.mark.parametrize("name,knn", [("runs.csv", False), ("comparison.md", False), ("comparison.csv", False),
                                      ("test_error_vs_epoch.png", False), ("ssl.md", True), ("knn_vs_epoch.csv", True)])
def test_the_report_never_writes_through_a_link_in_its_folder(tmp_path, name, knn):
    from sat.report import make_report

    runs = tmp_path / "runs"
    make_run(runs, "seed-0", test_acc=[0.5, 0.6, 0.7])
    knn_acc = {"test/knn_acc": 0.4} if knn else {}  # a self-supervised run's report (no comparison table)
    (runs / "seed-0" / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "test/acc": 0.5, **knn_acc, "train/acc": 0.5}) + "\n" for e in (1, 2, 3)))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (runs / "report").mkdir()
    (runs / "report" / name).symlink_to(victim)
    with pytest.raises(UserError, match="is a link where sat writes"):
        make_report(runs)
    assert victim.read_text() == "precious\n"


def test_the_report_never_writes_into_a_linked_out_folder(tmp_path):
    from sat.report import main

    make_run(tmp_path / "runs", "seed-0")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2
    assert list(elsewhere.iterdir()) == []


# --- a folder's YAML record: sized and alias-free before any reader copies it ------------------------


def _laughs() -> str:
    """511 bytes of nested aliases: 10**9 values once a reader copies the tree (OmegaConf does)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("record", ["config.yaml", "hydra.yaml", "overrides.yaml"])
def test_a_billion_laughs_record_is_refused_before_it_is_expanded(tmp_path, record):
    from sat.report import make_report

    run = make_run(tmp_path / "runs", "seed-0", status="running")
    (run / ".hydra" / record).write_text(_laughs())
    with within(20), pytest.raises(UserError, match=rf"{record} uses YAML aliases \(\*name\), which Hydra never"):
        make_report(tmp_path / "runs")  # before: OmegaConf.load never returned (and took the memory)


def test_an_oversized_record_is_refused_unread(tmp_path):
    from sat.report import make_report

    run = make_run(tmp_path / "runs", "seed-0", status="running")
    with open(run / ".hydra" / "config.yaml", "ab") as f:
        f.truncate(64 << 20)  # sparse: nothing on disk
    with pytest.raises(UserError, match=r"config\.yaml holds 67,108,864 bytes, more than a record Hydra writes"):
        make_report(tmp_path / "runs")
