"""Selection without clean labels: how much test accuracy a search loses by picking its
trial on the noisy validation split, and what the tuned methods are worth (docs/hparams_search.md).

    python benchmarks/hparams_selection.py ROOT [ROOT ...] [--defaults DIR ...] [--reruns DIR ...]

ROOT: folders holding study folders (``.../search-<method>/noise.rate-R+seed-S``, each with its
optuna.db); ``--defaults``: runs of each method's default settings (a sweep over method,
noise.rate and seed); ``--reruns``: the chosen configurations trained again with other seeds
(the report's rerun command). Prints Markdown tables, accuracies in percent, mean ± sample std
over the seeds (one study per seed), for the two ways a run's model is used:

- the last epoch's model: its final test accuracy;
- the checkpoint of the best-validation epoch (``best.pt``): its test accuracy;

each for the trial with the best last-epoch noisy-validation accuracy (``final/val/acc``), the
trial with the best noisy-validation accuracy over the epochs (``at_best_val/val/acc``), the trial
an oracle would pick (the best test accuracy) and the defaults. One of the two picks is the
study's own (the one by its objective); the other is made after the fact among the same trials.

Ties (the validation split of 200 digits moves in steps of 0.5%) go to the earliest trial, as
``python -m sat.report`` ranks them. Then the tuned methods side by side.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sat.report.runs import Run, metric_value, read_runs
from sat.report.study import DATABASE, Trial, load_study, objective_of, read_trial
from sat.report.tables import mean_pm


def test_at_best_val(run: Run) -> float:
    return 100 * run.at_best_val["test/acc"] if run.finished else math.nan


def final_test(run: Run) -> float:
    return 100 * metric_value(run.final, "test/acc") if run.finished else math.nan


def final_val(run: Run) -> float:
    return 100 * metric_value(run.final, "val/acc") if run.finished else math.nan


def best_val(run: Run) -> float:
    return 100 * run.at_best_val["val/acc"] if run.finished else math.nan


@dataclass
class Study:
    method: str
    rate: float
    seed: int
    objective: str  # what the study maximised (its multirun.yaml's objective)
    trials: list[Trial]  # the complete ones, with finished runs

    def best(self, score: Callable[[Trial], float]) -> Trial:
        """The trial with the highest ``score``, the earliest on ties."""
        return min(self.trials, key=lambda t: (-score(t), t.number))

    @property
    def picked(self) -> Trial:
        return self.best(lambda t: t.value)


def read_study(folder: Path) -> Study | None:
    loaded = load_study(folder, None, None)
    trials = [read_trial(t, folder) for t in loaded.get_trials(deepcopy=False)]
    done = [t for t in trials if t.state == "COMPLETE" and t.run is not None and t.run.finished]
    if not done:
        return None
    run = done[0].run
    return Study(run.choices["method"], float(run.settings["noise.rate"]), int(run.seed), objective_of(folder), done)


def runs_by_setting(folders: list[Path]) -> dict[tuple[str, float], dict[int, Run]]:
    """(method, noise rate) -> seed -> the finished run below one of ``folders``."""
    found: dict[tuple[str, float], dict[int, Run]] = defaultdict(dict)
    for run in (run for folder in folders for run in read_runs(folder)):
        if run.finished:
            found[(run.choices["method"], float(run.settings["noise.rate"]))][int(run.seed)] = run
    return found


def pm(values: list[float]) -> str:
    return mean_pm(values, 2) + (f" (n={len(values)})" if len(values) != 3 else "")


def selection_table(by: dict, defaults: dict, metric: Callable[[Run], float], picks: dict[str, Callable]) -> None:
    """One row per method and noise rate: each pick's ``metric``, the oracle's, the gaps, the defaults."""
    names = list(picks)
    print("| method | noise | " + " | ".join(names) + " | oracle (by test) | "
          + " | ".join(f"gap: oracle - {n}" for n in names) + " | default settings |")
    print("|---|---|" + "---|" * (2 * len(names) + 2))
    for (method, rate), group in sorted(by.items()):
        oracle = [metric(s.best(lambda t: metric(t.run)).run) for s in group]
        chosen = {n: [metric(pick(s).run) for s in group] for n, pick in picks.items()}
        default = [metric(defaults[(method, rate)][s.seed]) if s.seed in defaults.get((method, rate), {}) else math.nan
                   for s in group]
        print(f"| {method} | {rate:g} | " + " | ".join(pm(chosen[n]) for n in names) + f" | {pm(oracle)} | "
              + " | ".join(pm([o - p for o, p in zip(oracle, chosen[n])]) for n in names) + f" | {pm(default)} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument("--defaults", type=Path, nargs="+", default=[])
    parser.add_argument("--reruns", type=Path, nargs="+", default=[])
    args = parser.parse_args()
    by: dict[tuple[str, float], list[Study]] = defaultdict(list)
    for db in sorted(db for root in args.roots for db in root.rglob(DATABASE)):
        study = read_study(db.parent)
        if study is not None:
            by[(study.method, study.rate)].append(study)
    for group in by.values():
        group.sort(key=lambda s: s.seed)
    defaults, reruns = runs_by_setting(args.defaults), runs_by_setting(args.reruns)
    print("Studies (complete trials, per seed): " + "; ".join(
        f"{m} {r:g}: " + ", ".join(f"seed {s.seed} {len(s.trials)}" for s in g) for (m, r), g in sorted(by.items())))
    print()

    objectives = sorted({s.objective for g in by.values() for s in g})
    print(f"The studies maximised {', '.join(objectives)}: the study's own pick is the pick by that value; the other "
          "is made after the fact among the same trials.")
    print()
    picks = {"final-val pick": lambda s: s.best(lambda t: final_val(t.run)),
             "best-val pick": lambda s: s.best(lambda t: best_val(t.run))}
    print("Final test accuracy (%) of the last epoch's model; picked by the noisy-validation accuracy of the last "
          "epoch or by the best over the epochs")
    print()
    selection_table(by, defaults, final_test, picks)
    print("Test accuracy (%) of the best-validation checkpoint (best.pt); the same picks")
    print()
    selection_table(by, defaults, test_at_best_val, picks)

    rates = sorted({rate for _, rate in by})
    for title, metric, pick in (
            ("Final test accuracy (%)", final_test, lambda s: s.picked),
            ("Test accuracy (%) of the best-validation checkpoint", test_at_best_val, lambda s: s.picked)):
        print(f"{title}: tuned against tuned (the study's pick), each from its own studies (one per seed) on the "
              "same noisy validation split")
        print()
        print("| | " + " | ".join(f"noise {r:g}" for r in rates) + " |")
        print("|---|" + "---|" * len(rates))
        for method in sorted({m for m, _ in by} | {m for m, _ in defaults}):  # a method without studies: defaults
            print(f"| tuned {method} | " + " | ".join(pm([metric(pick(s).run) for s in by.get((method, r), [])])
                                                     for r in rates) + " |")
            if reruns:
                print(f"| tuned {method}: seed-0 study's pick, trained at seeds 0-2 | " + " | ".join(
                    pm([metric(run) for run in reruns.get((method, r), {}).values()]) for r in rates) + " |")
            print(f"| {method}, default settings | " + " | ".join(
                pm([metric(run) for run in defaults.get((method, r), {}).values()]) for r in rates) + " |")
        print()
    for (method, rate), group in sorted(by.items()):
        for s in group:
            t = s.picked
            print(f"<!-- {method} {rate:g} seed {s.seed}: study's pick trial {t.number} {t.params} (objective "
                  f"{t.value:.4g}, test at best val {test_at_best_val(t.run):.2f}, final test {final_test(t.run):.2f}) -->")


if __name__ == "__main__":
    main()
