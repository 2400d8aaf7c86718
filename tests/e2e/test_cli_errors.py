"""Bad input through the real entry points: one case per code path of the CLI that turns
it into exit status 2 and one ``error:`` line, with nothing else on stderr, no
traceback anywhere and no run folder left behind.

The paths (sat/cli/__init__.py): Hydra cannot compose the config (a wrong type, an
unknown key or option, a malformed override); a key added with ``+`` that nothing takes
(``check_keys``); an output folder that cannot be one (checked before Hydra makes it);
``resume=`` that names nothing to continue (expanded before Hydra); a refusal of the
task itself (train, evaluate, attack); a refused sweep job (a line of the sweep's
``refused.log``); a refusal of ``dry_run=true`` (sat/cli/dry_run.py); ``python -m sat.report``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY, run_entry
from hostile import one_line_error
from image_folder_files import write_class_folders

from sat.run.budget import available_bytes

CASES = [
    # (id, entry, arguments ({tmp}: the test's folder), the error line's text)
    ("task refuses a value", "train.py", [*TINY, "noise.rate=1.5"],
     "error: noise.rate=1.5 is out of range; accepted: a number >= 0 and <= 1"),
    ("schema: wrong type", "train.py", [*TINY, "trainer.epochs=abc"], "trainer.epochs='abc' is not an integer"),
    ("schema: unknown key", "train.py", [*TINY, "trainer.epoch=3"],
     "trainer.epoch is not a key of trainer; did you mean trainer.epochs?"),
    ("unknown group option", "train.py", ["experiment=quickstrat"],
     "experiment=quickstrat is not an option; did you mean experiment=quickstart?"),
    ("added key nothing takes", "train.py", [*TINY, "+method.alfa=1"], "method.alfa is not a key of method"),
    ("a sweep's method key no method takes", "train.py",
     ["-m", "experiment=quickstart", "method=ce,sat", "method.alfa=0.95", "hydra.sweep.dir={tmp}/sweep"],
     "error: method.alfa is not a key of method; did you mean method.alpha?"),
    ("malformed override", "train.py", [*TINY, "trainer.epochs=[1"], "cannot parse the override"),
    # The README's folder command on a CPU: ResNet-34 at 224 px, batch 256 (issue 29: killed at 20 GB before)
    ("memory: a folder on a CPU", "train.py", ["dataset=image_folder", "dataset.root={tmp}/folder", "device=cpu"],
     "activations at batch 256 of 3x224x224"),
    ("output folder is a file", "train.py", [*TINY, "hydra.run.dir={tmp}/a_file"],
     "output folder {tmp}/a_file is an existing file"),
    ("search without a validation split", "train.py",
     ["-m", "experiment=quickstart", "hparams_search=quickstart", "dataset.val_size=0"],
     "error: dataset.val_size=0 leaves no validation split, where the search maximises objective=final/val/acc; "
     "accepted: dataset.val_size=N with N > 0 (noisy labels held out of training: the search never reads clean "
     "labels)"),
    ("resume names nothing", "train.py", [*TINY, "resume={tmp}/empty"], "is a folder without checkpoints/last.pt"),
    ("resume path missing", "train.py", [*TINY, "resume={tmp}/nope.pt"], "resume={tmp}/nope.pt does not exist; accepted:"),
    ("dry run refuses a value", "train.py", [*TINY, "noise.rate=1.5", "dry_run=true"],
     "error: noise.rate=1.5 is out of range; accepted: a number >= 0 and <= 1"),
    ("resume: a folder's stored hydra key", "train.py", ["resume={tmp}/copied"],
     "resume: {tmp}/copied/.hydra/overrides.yaml holds the override '+hydra.callbacks.x._target_=builtins.open', a "
     "setting of Hydra itself (hydra.*), which a continuation never takes from a run folder"),
    ("sweep of 1e8 jobs", "train.py", ["-m", "seed=range(0,1e8)", *TINY],
     "error: this sweep makes 100,000,000 jobs, more than 100,000; accepted: a sweep of fewer jobs (a smaller range() "
     "or fewer values per swept key)"),
    ("evaluate: sweep of 1e8 jobs", "evaluate.py", ["-m", "checkpoint={tmp}/a.pt", "seed=range(0,1e8)"],
     "this sweep makes 100,000,000 jobs"),
    ("evaluate: no checkpoint", "evaluate.py", ["checkpoint={tmp}/nope.pt", "device=cpu"],
     "checkpoint='{tmp}/nope.pt' does not exist"),
    ("evaluate: report option", "evaluate.py", ["checkpoint={tmp}/nope.pt", "report=acuracy"],
     "report=acuracy is not an option; did you mean report=accuracy?"),
    ("attack: what to attack", "attack.py", ["checkpoint={tmp}/a.pt", "checkpoints={tmp}", "device=cpu"],
     "give exactly one of checkpoint=FILE or checkpoints=RUN_DIR|GLOB"),
]


# Refused before torch is imported (issue 29: a typo answered in a fraction of torch's import time).
BEFORE_TORCH = {"schema: wrong type", "schema: unknown key", "unknown group option", "added key nothing takes",
                "malformed override", "output folder is a file", "evaluate: report option",
                "a sweep's method key no method takes", "resume: a folder's stored hydra key", "sweep of 1e8 jobs",
                "evaluate: sweep of 1e8 jobs"}


def _without_import_times(proc: subprocess.CompletedProcess) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``proc`` with Python's ``-X importtime`` lines taken out of stderr, and the modules they name."""
    timed = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[-1].strip() for line in timed}
    stderr = "".join(line + "\n" for line in proc.stderr.splitlines() if not line.startswith("import time:"))
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, stderr), modules


@pytest.mark.parametrize("case,entry,args,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_exit_2_and_one_line(tmp_path, case, entry, args, expected):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "empty").mkdir()
    write_class_folders(tmp_path / "folder", per_class=1, test_per_class=1, size=8)
    (tmp_path / "victim.txt").write_text("precious\n")
    (tmp_path / "copied" / ".hydra").mkdir(parents=True)  # a copied run folder whose overrides open a file for writing
    (tmp_path / "copied" / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [
        "+hydra.callbacks.x._target_=builtins.open", f"+hydra.callbacks.x.file={tmp_path / 'victim.txt'}",
        "+hydra.callbacks.x.mode=w", *TINY]))
    cwd = tmp_path / "cwd"  # where Hydra would put outputs/ for a command without hydra.run.dir
    cwd.mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if case.startswith("memory") and available_bytes() > 90 * 2 ** 30:
        pytest.skip("this machine has the memory of ResNet-34 at 224 px, batch 256 (93 GiB at least)")
    proc = run_entry(entry, *args, cwd=cwd, check=False,  # Hydra's own outputs/<name>/<date>/<time> below cwd
                     env_extra={"PYTHONPROFILEIMPORTTIME": "1"})
    proc, imported = _without_import_times(proc)
    assert ("torch" in imported) == (case not in BEFORE_TORCH), sorted(m for m in imported if m.startswith("torch"))[:5]
    line = one_line_error(proc, expected.replace("{tmp}", str(tmp_path)).removeprefix("error: "))
    assert proc.stderr.strip().splitlines() == [line], proc.stderr  # nothing else on stderr
    if expected.startswith("error: "):
        assert line == expected
    if case == "memory: a folder on a CPU":  # the figures against the machine's, and the command that fits
        assert "more than the" in line and "GiB of cpu" in line and "trainer.batch_size<=" in line
        assert line.endswith(f"python train.py experiment=image_folder_cpu dataset.root={tmp_path}/folder")
    assert list(cwd.iterdir()) == []  # no run folder left, nor the outputs/ folders Hydra made for it
    assert (tmp_path / "victim.txt").read_text() == "precious\n"


def test_a_refused_sweep_job_is_a_line_of_the_sweep_s_log(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_entry("train.py", "-m", *TINY, "noise.rate=1.5", f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert sorted(p.name for p in sweep.iterdir()) == ["multirun.yaml", "refused.log"]
    (line,) = (sweep / "refused.log").read_text().splitlines()
    assert line.endswith("+seed-0: error: noise.rate=1.5 is out of range; accepted: a number >= 0 and <= 1")


def test_python_m_sat_report_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sat.report", str(tmp_path / "missing")], cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)
    line = one_line_error(proc, "missing is not a folder")
    assert proc.stderr.strip().splitlines() == [line]


def test_the_table_covers_every_entry_point():
    assert {c[1] for c in CASES} == {p.name for p in Path(ROOT).glob("*.py")}
