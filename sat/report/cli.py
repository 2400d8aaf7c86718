"""``python -m sat.report DIR [--out OUT] [--widths 8 64 ...] [--tol 1] [--ignore KEY ...] [--dry-run]``; a study
folder (a hyper-parameter search's, holding optuna.db): ``[--study NAME] [--storage URL] [--top 10]``"""

from __future__ import annotations

import argparse
import sys

from sat.errors import UserError
from sat.report.make import format_report, make_report
from sat.report.study import format_study_report, is_study, make_study_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sat.report",
        description="Tables and figures of a folder of runs (a sweep, finished or not): runs grouped by every "
                    "setting that differs but the seed.")
    parser.add_argument("dir", help="a sweep folder (multirun/<name>/<date>/<time>), a run folder, or any folder of runs")
    parser.add_argument("--out", help="where to write the tables and figures (default: DIR/report)")
    parser.add_argument("--widths", type=int, nargs="+", help="widths for the epoch-wise figure (default: a few)")
    parser.add_argument("--tol", type=float, default=1.0,
                        help="train error (%%) on the given noisy labels counted as interpolation (default 1)")
    parser.add_argument("--ignore", nargs="+", default=[], metavar="KEY",
                        help="more settings (or whole config nodes) that do not change results, left out of the grouping")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and group the runs and print the tables, write nothing")
    parser.add_argument("--study", help="a study folder's study, where its database holds several (default: the one)")
    parser.add_argument("--storage", help="the study's database URL, where it is not DIR/optuna.db")
    parser.add_argument("--top", type=int, default=10, help="a study's best trials in its table (default 10)")
    args = parser.parse_args(argv)
    try:
        if is_study(args.dir, args.storage):  # a hyper-parameter search's folder (sat.report.study)
            print(format_study_report(make_study_report(args.dir, args.out, storage=args.storage, study=args.study,
                                                        top=args.top, write=not args.dry_run)))
            return 0
        report = make_report(args.dir, args.out, widths=args.widths, tol=args.tol, ignore=tuple(args.ignore),
                             write=not args.dry_run)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0
