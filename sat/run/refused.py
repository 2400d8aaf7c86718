"""A command refused before its run started leaves no run folder behind.

Hydra creates the output folder (its ``.hydra/`` record and the log) before the task
checks a single value, so every typo would leave a "failed" folder among the real
runs. A folder that holds nothing but that record (and the refused run's own
``summary.json`` and lock) is removed, with the parents it leaves empty below the
current folder; a sweep job's refusal is kept as a line of the sweep's
``refused.log``. A folder with anything of a run in it (checkpoints, metrics, results)
is never touched.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from sat.run.files import open_append

_ONLY_RECORD = {".hydra", ".lock", "summary.json"}


def only_hydra_record(folder: Path) -> bool:
    """Nothing but Hydra's record, logs, the lock, and a summary saying the run failed
    (a killed run's says ``running``: its folder stays)."""
    if not folder.is_dir() or not all(p.name in _ONLY_RECORD or (p.suffix == ".log" and p.is_file())
                                      for p in folder.iterdir()):
        return False
    summary = folder / "summary.json"
    try:
        return not summary.exists() or json.loads(summary.read_text(encoding="utf-8")).get("status") == "failed"
    except (OSError, ValueError, AttributeError):
        return False


def drop_refused_run_folder(folder: str | Path, error: str, sweep_dir: str | Path | None = None) -> bool:
    """Remove ``folder`` if a refused command is all it records; returns whether it did.
    ``sweep_dir``: the sweep the job belonged to, whose ``refused.log`` gets the line."""
    folder, cwd = Path(folder), Path.cwd().resolve()
    if folder.resolve() == cwd or folder.resolve() in cwd.parents or not only_hydra_record(folder):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    if sweep_dir is not None and Path(sweep_dir).is_dir():
        with open_append(Path(sweep_dir) / "refused.log") as f:
            f.write(f"{folder.name}: error: {error}\n")
        return True
    parent = folder.resolve().parent
    while parent != cwd and cwd in parent.parents:  # the date and task folders Hydra made, if now empty
        with contextlib.suppress(OSError):
            parent.rmdir()
        if parent.exists():
            break
        parent = parent.parent
    return True
