"""Hydra's hooks into a run: the job log file that locks the run folder before Hydra
writes in it, and the callbacks that check a sweep folder before it starts and write a
sweep's tables when it ends (a training sweep's report, an evaluation sweep's table).
Each turns bad input into one ``error:`` line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sat.errors import UserError
from sat.parallel.identity import is_rank0
from sat.run.files import check_no_links, open_append
from sat.run.folder import refuse_other_task
from sat.run.lock import hold_lock, release_lock


class RunLogFile(logging.FileHandler):
    """Hydra's job log file (``hydra.job_logging.handlers.file``). Hydra sets up logging
    after creating the run folder and before writing ``.hydra/*.yaml`` into it, so this
    is where the folder is checked for links and locked: a refused command (a busy or
    booby-trapped folder) writes nothing there. The log itself is opened with O_NOFOLLOW."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = False,
                 errors: str | None = None):
        self._folder: Path | None = Path(filename).parent
        # A refusal raised here reaches the entry point (or the API) as the cause of
        # logging.config's error: sat.cli.bad_input finds it.
        if not is_rank0():  # rank 0 alone writes the run folder, so only it locks it
            self._folder = None
        else:
            refuse_other_task(self._folder, Path(filename).stem)
            hold_lock(self._folder)
        super().__init__(filename, mode, encoding, delay, errors)

    def _open(self):  # type: ignore[override]
        return open_append(self.baseFilename, self.encoding, self.errors)

    def close(self) -> None:
        super().close()
        if self._folder is not None:
            release_lock(self._folder)
            self._folder = None


class SweepFolderCheck(Callback):
    """A Hydra callback (``hydra.callbacks``): before a sweep writes ``multirun.yaml``
    and its jobs' folders, refuse a sweep folder holding links (a job folder that is a
    link would be written through)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        try:
            check_no_links(Path(str(config.hydra.sweep.dir)))
        except UserError as e:  # inside Hydra: a traceback would follow, so exit here (status 2)
            print(f"error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None


class SweepReport(Callback):
    """Hydra callback (``hydra.callbacks`` of train.yaml): when a training sweep ends,
    its report, by the code of ``python -m sat.report SWEEP_DIR`` (the table printed,
    tables and figures written to ``SWEEP_DIR/report/``). A sweep that left no run (every
    job refused) gets none."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from sat.report import cli  # (the report's packages: only when a sweep ends)

        sweep = Path(str(config.hydra.sweep.dir))
        if not is_rank0() or not sweep.is_dir() or next(sweep.rglob(".hydra/config.yaml"), None) is None:
            return
        print(f"\nsweep report (again, or while a sweep runs: python -m sat.report {sweep}):", flush=True)
        cli.main([str(sweep)])


class SweepTable(Callback):
    """Hydra callback (``hydra.callbacks`` of evaluate.yaml and attack.yaml): the
    combined table when a sweep ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from sat.report.evaluation_sweep import write_table  # (the report's packages: only when a sweep ends)

        files = write_table(config.hydra.sweep.dir)
        if files:
            print(f"sweep results: {', '.join(map(str, files))}", flush=True)
