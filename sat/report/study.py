"""The report of a hyper-parameter search: ``python -m sat.report <study folder>``.

A study folder (``multirun/<name>/search-<space>/<settings>+seed-N``, made by
``python train.py -m hparams_search=...``) holds the Optuna study (``optuna.db``) and one
run folder per trial (``trial-<number>``). Written into ``--out`` (default ``<folder>/report``):

- ``study.md``: the best trials by the objective (the value the search maximised: in
  every search space the last epoch's noisy-validation accuracy), each with its settings, its final test
  accuracy and test accuracy at the best-validation epoch (read from its run folder, after
  the fact: the search never saw them) and its folder; then the chosen configuration as
  a command that trains it again with more seeds;
- ``trials.csv``: every trial (state, objective, settings, test accuracies, folder, and
  the reason of a failed one);
- ``optimization_history`` and ``param_importances`` (PNG and PDF): Optuna's matplotlib
  figures (importances by Optuna's default evaluator, PED-ANOVA).
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sat.errors import UserError
from sat.report.runs import Run, metric_value, read_run
from sat.report.tables import cell, first_line, pct, relative
from sat.run import figures
from sat.run.files import write_atomic, write_text_atomic

DATABASE = "optuna.db"  # where the study sweeper keeps a study by default (SQLite in the study folder)
RERUN_SEEDS = "0,1,2,3,4"
ACCEPTED = f"a study folder holding {DATABASE}, or --storage URL of a study's database"


@dataclass
class Trial:
    """One trial as the report shows it; accuracies in percent (NaN: not known)."""

    number: int
    state: str  # COMPLETE | FAIL | RUNNING | ...
    value: float | None
    params: dict[str, Any]
    run: Run | None  # its run folder, when it has one
    reason: str = ""  # a failed trial's one-line reason

    @property
    def final_test_acc(self) -> float:
        return pct(metric_value(self.run.final, "test/acc")) if self.run is not None and self.run.finished else math.nan

    @property
    def test_acc_at_best_val(self) -> float:
        best = self.run.at_best_val if self.run is not None else None
        return pct(best.get("test/acc")) if best else math.nan


@dataclass
class StudyReport:
    folder: Path
    out: Path
    name: str
    direction: str
    objective: str  # what train.py returned (the trials' `objective` setting)
    trials: list[Trial]
    command: str | None  # the best trial's settings, to train again with more seeds
    top: int
    notes: list[str] = field(default_factory=list)  # what could not be drawn, and why
    files: list[Path] = field(default_factory=list)

    @property
    def ranked(self) -> list[Trial]:
        """Complete trials, best first."""
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        return sorted(done, key=lambda t: (-t.value if self.direction == "maximize" else t.value, t.number))


def is_study(folder: str | Path, storage: str | None = None) -> bool:
    """Is ``folder`` a study folder (or is a study's database given)?"""
    return storage is not None or (Path(folder) / DATABASE).is_file()


def load_study(folder: Path, storage: str | None, name: str | None) -> Any:
    """The study, read without changing its database (no table made, no schema upgrade)."""
    import optuna

    url = storage or f"sqlite:///{(folder / DATABASE).resolve()}"
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():  # SQLite would make an empty one
        raise UserError(key="--storage" if storage else "DIR", value=storage or str(folder), problem=f"holds no "
                        f"{'file' if storage else DATABASE}", accepted=ACCEPTED)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        rdb = optuna.storages.RDBStorage(url, skip_table_creation=True)
        names = optuna.study.get_all_study_names(rdb)
    except Exception as e:  # noqa: BLE001  (SQLAlchemy's and Optuna's errors: one line)
        raise UserError(key="--storage" if storage else "DIR", value=storage or str(folder),
                        problem=f"holds no study database we can read ({first_line(str(e))})", accepted=ACCEPTED) from None
    if name is None and len(names) != 1:
        raise UserError(key="--study", problem=f"is needed: {url} holds {len(names)} studies",
                        accepted=f"--study NAME, one of: {', '.join(names) or 'none'}")
    chosen = name or names[0]
    if chosen not in names:
        raise UserError(key="--study", value=chosen, problem=f"is not in {url}", accepted=", ".join(names) or "none")
    return optuna.load_study(study_name=chosen, storage=rdb)


def make_study_report(folder: str | Path, out: str | Path | None = None, *, storage: str | None = None,
                      study: str | None = None, top: int = 10, write: bool = True) -> StudyReport:
    """A study folder's report; ``write=False`` (``--dry-run``) reads and ranks it, writes nothing."""
    from sat.config import validate

    top = validate.positive_int("--top", top)
    folder = Path(folder).resolve()
    out = Path(out) if out is not None else folder / "report"
    loaded = load_study(folder, storage, study)
    trials = [read_trial(t, folder) for t in loaded.get_trials(deepcopy=False)]
    direction = loaded.direction.name.lower()
    report = StudyReport(folder, out, loaded.study_name, direction, objective_of(folder), trials, None, top)
    best = report.ranked[0] if report.ranked else None
    if best is not None and best.run is not None:
        report.command = rerun_command(best.run)
    if not write:
        return report
    try:
        out.mkdir(parents=True, exist_ok=True)
        drawn = _figures(loaded, report)  # first: what cannot be drawn is a note of study.md
        write_atomic(out / "study.md", to_markdown(report) + "\n")
        _write_trials_csv(report, out / "trials.csv")
        report.files = [out / "study.md", out / "trials.csv", *drawn]
    except OSError as e:
        raise UserError(f"cannot write the report into {out} ({e.strerror or e}); accepted: --out a writable "
                        "folder") from None
    return report


def objective_of(folder: Path) -> str:
    """What the trials returned (``objective``), as the search's ``multirun.yaml`` says."""
    from omegaconf import OmegaConf

    from sat.report.settings import load_stored_config

    manifest = folder / "multirun.yaml"
    return str(OmegaConf.select(load_stored_config(manifest), "objective", default="?")) if manifest.is_file() else "?"


def read_trial(frozen: Any, folder: Path) -> Trial:
    """An Optuna trial with its run folder (``run_dir``, as the study sweeper records it)."""
    run_dir = frozen.user_attrs.get("run_dir")
    path = Path(run_dir) if run_dir else None
    if path is not None and (folder / path.name).is_dir():
        path = folder / path.name  # trial folders lie in the study folder, which may have moved since (an archive)
    run = read_run(path) if path is not None and (path / ".hydra" / "config.yaml").is_file() else None
    return Trial(frozen.number, frozen.state.name, frozen.value, dict(frozen.params), run,
                 str(frozen.user_attrs.get("reason", "")))


def rerun_command(run: Run, seeds: str = RERUN_SEEDS) -> str:
    """``python train.py -m`` with the run's own settings (its method chosen explicitly, the
    search and the seed left out) and ``seed=<seeds>``: the chosen configuration, trained
    again as an ordinary sweep."""
    kept = [o for o in run.overrides if o.lstrip("+~").partition("=")[0] not in ("hparams_search", "seed", "method")]
    method = [f"method={run.choices['method']}"] if "method" in run.choices else []
    return " ".join(["python train.py -m", *kept, *method, f"seed={seeds}"])


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _value(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def to_markdown(report: StudyReport) -> str:
    states = {}
    for t in report.trials:
        states[t.state] = states.get(t.state, 0) + 1
    lines = [f"# Study {report.name}", "",
             f"{len(report.trials)} trials (" + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
             + f"). The objective, to {report.direction}: `{report.objective}`, as train.py returned it; ties go to "
             "the earliest trial. Test accuracies (%) are read from each trial's run folder after the search: it "
             "never saw them.", ""]
    ranked = report.ranked[:report.top]
    if ranked:
        keys = list(dict.fromkeys(k for t in ranked for k in t.params))
        lines += [f"## The best {len(ranked)} trials", "",
                  "| rank | trial | objective | " + " | ".join(keys)
                  + " | final test acc (%) | test acc at best val (%) | run folder |",
                  "|" + "---|" * (len(keys) + 6)]
        for rank, t in enumerate(ranked, 1):
            folder = relative(t.run.path, report.folder) if t.run is not None else "-"
            lines.append(f"| {rank} | {t.number} | {t.value:.4g} | " + " | ".join(_value(t.params.get(k, "-"))
                                                                                    for k in keys)
                         + f" | {_fmt(t.final_test_acc)} | {_fmt(t.test_acc_at_best_val)} | {folder} |")
        lines.append("")
    failed = [t for t in report.trials if t.state == "FAIL"]
    if failed:
        lines += ["## Failed trials", ""] + [f"- trial {t.number}: {t.reason or '(no reason recorded)'}" for t in failed]
        lines.append("")
    if report.command:
        lines += ["## The chosen configuration, with more seeds", "", "```", report.command, "```", ""]
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines).rstrip()


def _write_trials_csv(report: StudyReport, path: Path) -> None:
    keys = list(dict.fromkeys(k for t in report.trials for k in t.params))
    fields = ["trial", "state", "objective", *keys, "final_test_acc_pct", "test_acc_at_best_val_pct", "run", "reason"]

    def write(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        for t in report.trials:
            writer.writerow({"trial": t.number, "state": t.state, "objective": cell(t.value),
                             **{k: cell(v) for k, v in t.params.items()},
                             "final_test_acc_pct": cell(t.final_test_acc), "test_acc_at_best_val_pct": cell(
                                 t.test_acc_at_best_val),
                             "run": relative(t.run.path, report.folder) if t.run is not None else "",
                             "reason": t.reason})

    write_text_atomic(path, write)


def _figures(study: Any, report: StudyReport) -> list[Path]:
    """Optuna's optimisation history and parameter importances (with too few complete
    trials for one, a note says so instead)."""
    from optuna.visualization import matplotlib as optuna_plots

    if not report.ranked:
        report.notes.append("no figures: the study holds no complete trial")
        return []
    plt = figures.pyplot()
    files: list[Path] = []
    for stem, plot in (("optimization_history", optuna_plots.plot_optimization_history),
                       ("param_importances", optuna_plots.plot_param_importances)):
        with plt.rc_context(), warnings.catch_warnings():  # Optuna's plots set pyplot's style globally
            warnings.simplefilter("ignore")  # ExperimentalWarning: the matplotlib backend
            try:
                axes = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                report.notes.append(f"no {stem.replace('_', ' ')} figure: {first_line(str(e))}")
                continue
            fig = axes.figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            files += figures.save(fig, report.out / stem)
    return files


def format_study_report(report: StudyReport) -> str:
    """What ``python -m sat.report <study folder>`` prints."""
    if not report.files:  # --dry-run
        return "\n".join([to_markdown(report), "", "--dry-run: nothing written"])
    return "\n".join([to_markdown(report), "", f"wrote {report.out}/: "
                      + ", ".join(relative(f, report.out) for f in report.files)])
