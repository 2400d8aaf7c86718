"""Every command the README and docs/ show still works: each fenced ``python train.py``,
``python evaluate.py``, ``python attack.py`` and ``python -m sat.report`` command is checked
under ``dry_run=true`` (the report: ``--dry-run``), through the same functions the entry
points call (:func:`sat.cli.command_line`, :func:`sat.cli.dry_run.check_command`), in this
process. A command that no longer composes or is refused fails with its file and line.

Placeholders (``RUN``, ``SWEEP``, ``DIR``, ``multirun/quickstart/DATE/TIME``, ...) point at
the session's quickstart sweep (``quickstart_sweep``: the README's SAT-vs-CE command, run
for real by tests/e2e/test_quickstart.py, with ``epoch_N.pt`` every 10 epochs) and a tiny
class-folder dataset. Each sweep is expanded whole; of its jobs, the first and the last of
every combination of group options are checked (both ends of each swept range, every
method, preset and launcher), which keeps the hundreds of jobs the docs sweep in seconds:
the checks of every job are the same code (tests/integration/test_dry_run.py).
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CONF, ROOT, run_entry
from image_folder_files import random_image, write_image

from sat import cli
from sat.cli import dry_run
from sat.errors import UserError

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# the example plug-in (examples/plugin): its options are chosen by commands that say it is on the search path
PLUGIN = ROOT / "examples" / "plugin"
PLUGIN_OPTIONS = {f"{p.parent.name}={p.stem}" for p in (PLUGIN / "conf").glob("*/*.yaml")}
ENTRY_POINTS = {"python train.py": "train", "python evaluate.py": "evaluate", "python attack.py": "attack",
                "python -m sat.report": "report"}


@dataclass
class Command:
    file: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def documented_commands() -> list[Command]:
    """The commands of every fenced block of the README and docs/ (a line ending in ``\\``
    continues on the next)."""
    found = []
    for path in DOCUMENTS:
        lines, fenced, pending = path.read_text(encoding="utf-8").splitlines(), False, None
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("```"):
                fenced, pending = not fenced, None
                continue
            if not fenced:
                continue
            if pending is not None:
                pending.text += " " + line.strip().removesuffix("\\")
            elif any(line.strip().startswith(p + " ") or line.strip() == p for p in ENTRY_POINTS):
                pending = Command(path, number, line.strip().removesuffix("\\"))
                found.append(pending)
            if pending is not None and not line.rstrip().endswith("\\"):
                pending = None
    return found


COMMANDS = documented_commands()


@pytest.fixture(scope="module")
def places(quickstart_sweep, tmp_path_factory) -> list[tuple[str, str]]:
    """What each placeholder stands for (longest first): the quickstart sweep, its SAT and
    CE runs, and a folder of class folders."""
    sweep = quickstart_sweep[0]
    sat_run, ce_run = sweep / "method-sat+seed-0", sweep / "method-ce+seed-0"
    folder = tmp_path_factory.mktemp("image_folder")
    for split in ("train", "test"):
        for label, name in enumerate(("cat", "dog")):
            for i in range(2):
                write_image(folder / split / name / f"{i}.png", random_image(torch_generator(), label, 12, 12))
    runs = {"RUN_A": sat_run, "RUN_B": ce_run, "CE_RUN": ce_run, "GAMBLER_RUN": ce_run}
    for name in ("RUN_DIR", "OTHER_RUN", "SAT_SELECTIVE_RUN", "EVAL_DIR", "EVAL_FOLDER", "RUN_1", "RUN_2", "RUN_3",
                 "RUN_SEED0", "RUN_SEED1", "RUN_SEED2", "SWEEP/RUN", "outputs/quickstart/DATE/TIME", "RUN", "$RUN"):
        runs.setdefault(name, sat_run)
    # a review page's export: the first suspect of the SAT run relabelled to its suggestion
    suspect = next(csv.DictReader(io.StringIO((sat_run / "label_errors.csv").read_text(encoding="utf-8"))))
    decisions = folder / "label_decisions.csv"
    decisions.write_text(f"sample_id,decision,new_label\n{suspect['sample_id']},relabel,{suspect['suggested_label']}\n")
    # labels to train on (refined or cleaned by evaluate.py): the SAT run's own noise file, a real one of the dataset
    labels = {name: str(sat_run / "noise.pt") for name in ("EVAL_DIR/refined_labels.pt", "EVAL_FOLDER/cleaned_labels.pt",
                                                           "cleaned/$D-seed-$S/cleaned_labels.pt")}
    shell = {"~/Downloads/label_decisions.csv": str(decisions), "cleaned/$D-seed-$S": str(sat_run), "$D": "relabel",
             "$S": "0", **labels}  # the loop of the cleaned-labels measurement, its first pass
    sweeps = {name: sweep for name in ("multirun/quickstart/DATE/TIME", "multirun/ssl_digits/DATE/TIME",
                                       "multirun/dd_digits/<date>/<time>", "FOLDER_HOLDING_BOTH_SWEEPS",
                                       "FOLDER_OF_THE_SWEEPS", "SWEEP_DIR", "SWEEP")}
    # a hyper-parameter search's folder: a real Optuna study of one 2-epoch trial
    study = tmp_path_factory.mktemp("study") / "search"
    run_entry("train.py", "-m", "experiment=quickstart", "hparams_search=quickstart", "hydra.sweeper.n_trials=1",
              "trainer.epochs=2", "method.start_epoch=1", "logger=none", f"hydra.sweep.dir={study}", cwd=study.parent)
    sweeps.update({name: study for name in ("multirun/quickstart/search-sat/seed-0",
                                            "multirun/quickstart/search-sat/noise.rate-0.4+seed-0")})
    folders = {"dataset.root=DIR": f"dataset.root={folder}", "dataset.root=/data/mine": f"dataset.root={folder}"}
    table = [*folders.items(), *shell.items(), *((k, str(v)) for k, v in runs.items()),
             *((k, str(v)) for k, v in sweeps.items()),
             ("DIR", str(sweep))]
    return sorted(table, key=lambda kv: -len(kv[0]))


def torch_generator():
    import torch

    return torch.Generator().manual_seed(0)


def fill(text: str, places: list[tuple[str, str]]) -> str:
    """The command with its placeholders replaced (whole words only: ``RUN`` in
    ``RUN_DIR`` is not ``RUN``)."""
    pattern = re.compile("|".join(rf"(?<![\w/]){re.escape(k)}(?![\w])" for k, _ in places))
    value = dict(places)
    return pattern.sub(lambda m: value[m[0]], text)


def sample(plan_jobs: list[list[str]]) -> set[int]:
    """The jobs checked of a sweep: the first and the last of every combination of group
    options (``method=``, ``experiment=``, ...)."""
    first, last = {}, {}
    for num, job in enumerate(plan_jobs):
        key = tuple(o for o in job if "." not in o.partition("=")[0])
        first.setdefault(key, num)
        last[key] = num
    return set(first.values()) | set(last.values())


def uses_plugin(argv: list[str]) -> bool:
    """Does the command choose an option of the example plug-in (``method=selc``, or
    ``method=ce,sat,selc``)?"""
    return any(f"{key}={value}" in PLUGIN_OPTIONS for key, _, values in (a.partition("=") for a in argv)
               for value in values.split(","))


def check(command: Command, places: list[tuple[str, str]], capsys, monkeypatch) -> list[str]:
    """The command's refusals (empty: it passes). A command choosing the example plug-in's
    options runs as its page says: its package importable, its conf/ on Hydra's search path."""
    words = shlex.split(fill(command.text, places), comments=True)
    entry = next(v for k, v in ENTRY_POINTS.items() if words[:len(k.split())] == k.split())
    argv = words[len(next(k for k, v in ENTRY_POINTS.items() if v == entry).split()):]
    if entry == "report":
        from sat.report.cli import main

        with contextlib.redirect_stdout(io.StringIO()):
            status = main([*argv, "--dry-run"])
        return [] if status == 0 else [capsys.readouterr().err.strip()]
    if uses_plugin(argv) and not any(a.startswith("hydra.searchpath=") for a in argv):
        monkeypatch.syspath_prepend(str(PLUGIN))
        argv.append(f"hydra.searchpath=[file://{PLUGIN / 'conf'}]")
    try:
        argv = cli.command_line(argv, resumable=entry == "train")
        if not any(a.startswith("dry_run=") for a in argv):
            argv.append("dry_run=true")
        plan = dry_run.check_command(CONF, entry, argv, only=sample if "-m" in argv else None)
    except UserError as e:
        return [str(e)]
    assert plan.jobs, command.text
    return [f"job {j.num} ({' '.join(j.overrides)}): {j.refusal}" for j in plan.refused]


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_a_documented_command_works(command, places, capsys, monkeypatch):
    refusals = check(command, places, capsys, monkeypatch)
    assert not refusals, f"{command.where}: `{command.text}` no longer works:\n" + "\n".join(refusals)


def test_the_docs_show_commands_of_every_entry_point():
    """The collector finds the commands (a broken one would pass by being missed)."""
    assert {next(v for k, v in ENTRY_POINTS.items() if c.text.startswith(k)) for c in COMMANDS} == \
        {"train", "evaluate", "attack", "report"}
    assert len(COMMANDS) > 60
    assert any(c.file.name == "README.md" and c.text == "python train.py -m experiment=quickstart method=ce,sat"
               for c in COMMANDS)
