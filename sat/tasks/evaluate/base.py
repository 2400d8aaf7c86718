"""What every report of ``evaluate.py`` shares: the checkpoints it was given, restored,
where it writes, and how results are kept beside the evaluated run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from sat.run.files import write_json_atomic
from sat.run.folder import RunFolder
from sat.tasks.restore import RestoredRun


@dataclass
class Evaluation:
    """The checkpoints a report evaluates, restored, and the settings every report uses."""

    runs: list[tuple[Path, RestoredRun]]
    out: Path  # the evaluation's own output folder
    batch_size: int
    amp_dtype: torch.dtype | None
    seed: int


class Report:
    """One kind of evaluation (``report=<name>``, a file of conf/report/): its YAML keys
    are its constructor's arguments, checked there. :meth:`__call__` writes its files
    into ``evaluation.out`` (through the atomic writer), prints its table and returns
    the result that ``evaluate.py`` returns."""

    name: ClassVar[str]
    takes_several: ClassVar[bool] = False  # several checkpoints side by side (checkpoint=[a.pt,b.pt])
    needs_images_on_device: ClassVar[bool] = True  # False: a streamed dataset will do

    def __call__(self, evaluation: Evaluation) -> dict[str, Any]:
        raise NotImplementedError


def save_next_to_run(checkpoint: Path, name: str, result: dict[str, Any], stem: str | None = None) -> Path | None:
    """Also keep a result in the evaluated run's own folder (``RUN/evaluations/``), under
    a new name each time: an evaluation never overwrites another. ``stem``: what the
    result covers (default: the checkpoint's name, ``last``)."""
    run = RunFolder.of_checkpoint(checkpoint)
    if run is None:
        return None
    folder = run / "evaluations"
    try:
        folder.mkdir(exist_ok=True)
        path = folder / f"{stem or checkpoint.stem}.{name}"
        base, suffix, n = path.stem, path.suffix, 1
        while path.exists():
            n += 1
            path = folder / f"{base}.{n}{suffix}"
        write_json_atomic(path, result)
    except OSError:  # a run folder we may read but not write: the result is in the output folder anyway
        return None
    return path


def print_rows(rows: list[tuple[str, str]]) -> None:
    """A two-column table: what, then its value."""
    width = max(len(key) for key, _ in rows)
    print("\n".join(f"{key:<{width}}  {value}" for key, value in rows), flush=True)
