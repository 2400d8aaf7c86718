"""Report of a folder of runs: ``python -m sat.report multirun/<sweep> [--out DIR]``.

Runs are grouped by every setting that differs between them except the seed (read
from each run's stored config and Hydra's record of its group options; paths, device,
thread counts and other settings that do not change results left out), and only the
runs of one group are averaged. Writes into ``--out`` (default ``<folder>/report``):

- ``runs.csv``: one row per run: its status, a column per differing setting, seed,
  final errors, test accuracy at the best-validation epoch, the method's effective
  hyper-parameters;
- ``comparison.md`` / ``comparison.csv``: final test accuracy and test accuracy at the
  best-validation epoch, mean ± std over seeds, rows = settings other than noise
  (the method, ...), columns = noise settings;
- ``test_error_vs_epoch``: test error against epoch per group (or per width);
- with a sweep over ``model.width`` (double descent) also ``test_error_vs_width`` (the
  interpolation threshold marked) and ``test_error_heatmap``, one line or panel per
  series of groups that differ only in width;
- with self-supervised runs (those logging ``test/knn_acc``) also ``ssl.md`` / ``ssl.csv``
  (per group: kNN at the last evaluation of training, the offline ``evaluate.py
  report=linear_probe|knn`` results of ``last.pt`` found in ``RUN/evaluations/`` beside
  their random-init reference, the projection std; mean ± std over seeds) and
  ``knn_vs_epoch`` (test kNN accuracy against epoch, mean ± std band over seeds; its data
  in ``knn_vs_epoch.csv``).

A study folder (a hyper-parameter search's, holding ``optuna.db``) gets the study's report
instead (:mod:`sat.report.study`): its best trials, Optuna's figures and the rerun command.

Figures are PNG (200 dpi) and PDF; all numbers are percentages. It also prints the
groups, the comparison and which runs finished, failed (with the error line), were
preempted, are running (or were killed), or have not started (jobs of a sweep's grid
without a folder, from the ``multirun.yaml`` Hydra writes at the sweep root).

Modules, one job each: ``settings`` (which config values count), ``runs`` (folders ->
plain :class:`Run` values), ``groups`` (grouping, titles), ``grid`` (a sweep's jobs, by
Hydra), ``double_descent`` (width curves), ``tables``, ``comparison``, ``ssl`` (the
self-supervised table and curves), ``status``,
``figures``, ``make`` (all of it), ``study`` (a hyper-parameter search's study), ``cli``.
"""

from sat.report.cli import main
from sat.report.comparison import Comparison, compare
from sat.report.double_descent import WidthPoint, WidthSeries, interpolation_threshold, width_series
from sat.report.grid import expand_grid, sweep_jobs
from sat.report.groups import Group, Grouping, group_runs, title
from sat.report.make import Report, format_report, make_report
from sat.report.runs import STATUS_LABELS, Run, read_run, read_runs

__all__ = [
    "STATUS_LABELS", "Comparison", "Group", "Grouping", "Report", "Run", "WidthPoint", "WidthSeries", "compare",
    "expand_grid", "format_report", "group_runs", "interpolation_threshold", "main", "make_report", "read_run",
    "read_runs", "sweep_jobs", "title", "width_series",
]
