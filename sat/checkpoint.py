"""Checkpoints: the full training state as plain tensors and Python values.

Written atomically (a temporary file renamed into place), so an interrupted save never
leaves a half-written file where a loadable one was; read with
``torch.load(weights_only=True)``, so loading never runs code from the file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from sat.errors import UserError

FORMAT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict[str, Any], path: str | Path, *copies: str | Path) -> None:
    """Serialise ``state`` once to ``path``, then copy the file to each of ``copies``
    (also atomically): a best or every-N checkpoint costs a file copy, not a second
    serialisation of the whole training state."""
    atomic_torch_save({"format": FORMAT_VERSION, **state}, path)
    for copy in copies:
        fd, tmp = tempfile.mkstemp(dir=Path(copy).parent, prefix=f".{Path(copy).name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, copy)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; bad paths and foreign
    files give a one-line :class:`UserError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint={str(path)!r} does not exist; give the path of a .pt file under a run's checkpoints/ folder")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise UserError(f"checkpoint={str(path)!r} could not be read as a sat checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION or "config" not in state:
        raise UserError(f"checkpoint={str(path)!r} is not a sat checkpoint (format {FORMAT_VERSION} with a stored config)")
    return state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
