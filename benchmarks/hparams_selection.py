"""Selection without clean labels: how much test accuracy a search loses by picking its
trial on the noisy validation split, and what the tuned methods are worth (docs/hparams_search.md).

    python benchmarks/hparams_selection.py ROOT [--defaults DIR] [--reruns DIR] [--metric final|at_best_val]

ROOT: a folder holding study folders (``multirun/quickstart/search-<method>/noise.rate-R+seed-S``,
each with its optuna.db); ``--defaults``: runs of each method's default settings (a sweep over
method, noise.rate and seed); ``--reruns``: the chosen configurations trained again with other
seeds (the report's rerun command); ``--metric``: the test accuracy compared, at the last epoch
(default) or at the best-validation epoch. Prints Markdown tables, accuracies in percent, mean ±
sample std over the seeds:

1. per method and noise rate: the test accuracy of the trial with the best objective (the
   noisy-validation accuracy; ties go to the earliest trial, as the report ranks them), of the
   trial an oracle would pick (the best test accuracy), their gap, and the default settings'
   test accuracy at the same seeds;
2. tuned against tuned (each from its own study on the same noisy validation split) and the
   defaults, per noise rate.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sat.report.runs import Run, metric_value, read_runs
from sat.report.study import DATABASE, Trial, load_study, read_trial
from sat.report.tables import mean_pm


@dataclass
class Study:
    method: str
    rate: float
    seed: int
    picked: Trial  # the best objective (earliest on ties)
    oracle: Trial  # the best test accuracy
    complete: int


def test_acc(run: Run, metric: str) -> float:
    """A finished run's test accuracy (%) at its last epoch or at its best-validation epoch."""
    if not run.finished:
        return math.nan
    return 100 * metric_value(run.final, "test/acc") if metric == "final" else 100 * run.at_best_val["test/acc"]


def read_study(folder: Path, metric: str) -> Study | None:
    loaded = load_study(folder, None, None)
    trials = [read_trial(t, folder) for t in loaded.get_trials(deepcopy=False)]
    done = [t for t in trials if t.state == "COMPLETE" and t.run is not None and t.run.finished]
    if not done:
        return None
    picked = min(done, key=lambda t: (-t.value, t.number))
    oracle = max(done, key=lambda t: (test_acc(t.run, metric), -t.number))
    run = picked.run
    return Study(run.choices["method"], float(run.settings["noise.rate"]), int(run.seed), picked, oracle, len(done))


def runs_by_setting(folder: Path | None, metric: str) -> dict[tuple[str, float], dict[int, float]]:
    """(method, noise rate) -> seed -> test accuracy of the finished runs below ``folder``."""
    found: dict[tuple[str, float], dict[int, float]] = defaultdict(dict)
    if folder is None:
        return found
    for run in read_runs(folder):
        if run.finished:
            found[(run.choices["method"], float(run.settings["noise.rate"]))][int(run.seed)] = test_acc(run, metric)
    return found


def pm(values: list[float]) -> str:
    return mean_pm(values, 2) + (f" (n={len(values)})" if len(values) != 3 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--defaults", type=Path)
    parser.add_argument("--reruns", type=Path)
    parser.add_argument("--metric", choices=("final", "at_best_val"), default="final")
    args = parser.parse_args()
    metric = args.metric
    studies = [s for s in (read_study(db.parent, metric) for db in sorted(args.root.rglob(DATABASE))) if s is not None]
    defaults, reruns = runs_by_setting(args.defaults, metric), runs_by_setting(args.reruns, metric)

    def acc(trial: Trial) -> float:
        return test_acc(trial.run, metric)

    by = defaultdict(list)
    for s in studies:
        by[(s.method, s.rate)].append(s)

    print(f"Test accuracy ({'last epoch' if metric == 'final' else 'at the best-validation epoch'}, %)")
    print()
    print("| method | noise | trials | picked by noisy val | oracle (by test) | gap (oracle - picked) | default "
          "settings | picked - default |")
    print("|---|---|---|---|---|---|---|---|")
    for (method, rate), group in sorted(by.items()):
        group.sort(key=lambda s: s.seed)
        picked = [acc(s.picked) for s in group]
        oracle = [acc(s.oracle) for s in group]
        default = [defaults.get((method, rate), {}).get(s.seed, math.nan) for s in group]
        print(f"| {method} | {rate:g} | {'/'.join(str(s.complete) for s in group)} | {pm(picked)} | {pm(oracle)} | "
              f"{pm([o - p for o, p in zip(oracle, picked)])} | {pm(default)} | "
              f"{pm([p - d for p, d in zip(picked, default)])} |")
    print()
    print("Seeds: " + ", ".join(f"{m} {r:g}: {[s.seed for s in g]}" for (m, r), g in sorted(by.items())))
    print()
    rates = sorted({rate for _, rate in by})
    print("| | " + " | ".join(f"noise {r:g}" for r in rates) + " |")
    print("|---|" + "---|" * len(rates))
    for method in sorted({m for m, _ in by}):
        print(f"| tuned {method} (each seed's study, its pick) | "
              + " | ".join(pm([acc(s.picked) for s in by.get((method, r), [])]) for r in rates) + " |")
        if reruns:
            print(f"| tuned {method} (seed-0 study's pick, seeds 0-2) | "
                  + " | ".join(pm(list(reruns.get((method, r), {}).values())) for r in rates) + " |")
        print(f"| {method} defaults | "
              + " | ".join(pm(list(defaults.get((method, r), {}).values())) for r in rates) + " |")
    for (method, rate), group in sorted(by.items()):
        for s in sorted(group, key=lambda s: s.seed):
            print(f"<!-- {method} {rate:g} seed {s.seed}: picked trial {s.picked.number} {s.picked.params} "
                  f"(objective {s.picked.value:.4g}, test {acc(s.picked):.2f}); oracle trial {s.oracle.number} "
                  f"{s.oracle.params} (test {acc(s.oracle):.2f}) -->")


if __name__ == "__main__":
    main()
