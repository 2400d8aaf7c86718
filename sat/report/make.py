"""The whole report of a folder of runs: read, group, write tables and figures, and
say what it found."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from sat.errors import UserError
from sat.report import comparison, figures, ssl
from sat.report.double_descent import (
    WIDTH,
    WidthSeries,
    default_widths,
    interpolation_threshold,
    width_axis_label,
    width_series,
)
from sat.report.grid import not_started
from sat.report.groups import Grouping, group_runs, title
from sat.report.runs import Run, read_runs
from sat.report.status import status_lines
from sat.report.tables import group_table, relative, write_runs_csv
from sat.run.files import write_atomic


@dataclass
class Report:
    root: Path
    out: Path
    runs: list[Run]
    grouping: Grouping
    series: list[WidthSeries]  # double-descent series (empty without a width sweep)
    comparison: comparison.Comparison | None  # the runs trained on labels (None: every run is self-supervised)
    not_started: list[tuple[Path, list[str]]]  # (sweep root, job overrides)
    tol: float
    ssl: ssl.SSLComparison | None = None  # the self-supervised runs' table (None: no SSL run)
    files: list[Path] = field(default_factory=list)


def make_report(
    root: str | Path, out: str | Path | None = None, *, widths: list[int] | None = None, tol: float = 1.0,
    ignore: tuple[str, ...] = (),
) -> Report:
    """Read every run below ``root`` and write into ``out`` (default ``root/report``) what
    its runs measured: ``runs.csv``, ``comparison.md``/``.csv`` (runs trained on labels),
    ``ssl.md``/``.csv`` (self-supervised runs) and the figures. ``widths``: the widths of
    the epoch-wise figure (default: a few); ``tol``: the train error (%) on the noisy labels
    counted as interpolation; ``ignore``: more settings that do not change results."""
    root = Path(root).resolve()
    out = Path(out) if out is not None else root / "report"
    runs = read_runs(root)
    grouping = group_runs(runs, ignore)
    series = width_series(grouping)
    for s in series:
        s.threshold = interpolation_threshold(s.points, tol)
    finished = [r for r in runs if r.finished]
    report = Report(root, out, runs, grouping, series, _label_comparison(grouping),
                    not_started(root, [(r.path, r.overrides) for r in runs]), tol, ssl.compare(runs, ignore))

    try:
        out.mkdir(parents=True, exist_ok=True)
        write_runs_csv(grouping, root, out / "runs.csv")
        report.files = [out / "runs.csv"]
        if report.comparison is not None:
            labelled = [r for g in report.grouping.groups for r in g.runs if not ssl.is_ssl(r)]
            write_atomic(out / "comparison.md", comparison.to_markdown(report.comparison, title(labelled)) + "\n")
            comparison.write_csv(report.comparison, out / "comparison.csv")
            report.files += [out / "comparison.md", out / "comparison.csv"]
        if finished:
            report.files += _figures(report, finished, widths)
        if report.ssl is not None:
            report.files += _ssl_files(report)
    except OSError as e:  # a read-only sweep folder (a shared archive): say where to write instead
        raise UserError(f"cannot write the report into {out} ({e.strerror or e}); accepted: --out a writable "
                        "folder") from None
    return report


def _figures(report: Report, finished: list[Run], widths: list[int] | None) -> list[Path]:
    out, series, head = report.out, report.series, title(finished)
    if not series:  # no width sweep: the groups' epoch curves
        curves = [(g.label, g.finished) for g in report.grouping.groups if g.finished]
        return figures.plot_epochs_by_group(curves, head, out / "test_error_vs_epoch")
    axis = width_axis_label({r.choices.get("model", r.settings.get("model._target_", "?")) for r in finished})
    files = figures.plot_width(series, head, axis, report.tol, out / "test_error_vs_width")
    files += figures.plot_epochs_by_width(series, widths or default_widths(series), head, out / "test_error_vs_epoch")
    files += figures.plot_heatmap(series, head, axis, out / "test_error_heatmap")
    return files


def _ssl_files(report: Report) -> list[Path]:
    """``ssl.md``/``.csv`` and, with finished SSL runs, the kNN-vs-epoch curves (figure and data)."""
    out, cmp = report.out, report.ssl
    head = title([r for g in cmp.grouping.groups for r in g.runs])
    write_atomic(out / "ssl.md", ssl.to_markdown(cmp, head) + "\n")
    ssl.write_csv(cmp, out / "ssl.csv")
    files = [out / "ssl.md", out / "ssl.csv"]
    if cmp.groups:
        data = ssl.curves(cmp)
        ssl.write_curves_csv(data, out / "knn_vs_epoch.csv")
        files += [out / "knn_vs_epoch.csv", *figures.plot_knn_vs_epoch(data, head, out / "knn_vs_epoch")]
    return files


def has_validation(runs: list[Run]) -> bool:
    """Whether any run picked a best-validation epoch (has a validation split)."""
    return any(r.at_best_val for r in runs)


def _label_comparison(grouping: Grouping) -> comparison.Comparison | None:
    """The noisy-label comparison of the groups trained on labels (a self-supervised run's
    test accuracy is its online probe's, which that table would mislabel), with the
    best-validation column only where a run has a validation split; None without such groups."""
    labelled = [g for g in grouping.groups if not any(ssl.is_ssl(r) for r in g.runs)]
    if not labelled:
        return None
    runs = [r for g in labelled for r in g.runs]
    metrics = tuple(m for m in comparison.METRICS if has_validation(runs) or not m.needs_validation)
    return comparison.compare(replace(grouping, groups=labelled), _noise_title(runs), metrics)


def _noise_title(runs: list[Run]) -> str:
    """The comparison's column header when every run has the same noise."""
    noise = {(r.choices.get("noise"), r.settings.get("noise.rate")) for r in runs}
    if len(noise) != 1:
        return "all runs"
    kind, rate = noise.pop()
    return " ".join(str(x) for x in (kind, "noise", rate) if x is not None)


def format_report(report: Report) -> str:
    """What ``python -m sat.report`` prints."""
    lines = [f"{len(report.runs)} run(s) below {report.root} in {len(report.grouping.groups)} group(s)"
             + (f" by {', '.join(report.grouping.columns)}" if report.grouping.columns else "")
             + "; mean ± std over finished seeds", "", group_table(report.grouping, has_validation(report.runs)), ""]
    for s in report.series:
        lines.append(f"interpolation threshold ({s.label}; train error <= {report.tol:g}%): "
                     + (f"{WIDTH} {s.threshold}" if s.threshold is not None else "not reached"))
    if report.series:
        lines.append("")
    if report.comparison is not None:
        lines += [comparison.to_markdown(report.comparison, ""), ""]
    if report.ssl is not None:
        lines += [ssl.to_markdown(report.ssl, ""), ""]
    lines += status_lines(report.runs, report.not_started, report.root)
    lines.append(f"wrote {report.out}/: " + ", ".join(relative(f, report.out) for f in report.files))
    return "\n".join(lines)
