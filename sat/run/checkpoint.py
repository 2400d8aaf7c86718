"""Checkpoints: the full training state as plain tensors and Python values.

- Loading never runs code: ``torch.load(weights_only=True)``, and a file that needs
  more than tensors and plain values is refused.
- A checksum of the state (every tensor's bytes and every value) is stored in it and
  verified on load, so a damaged file is refused instead of evaluated.
- One epoch's files (``last.pt`` and, when due, ``best.pt`` and ``epoch_N.pt``) are
  written in full into ``checkpoints/.pending/`` first, then published by renames,
  ``last.pt`` first: it is the commit point. :func:`repair` finishes an interrupted
  publication of the committed epoch and discards the files of an uncommitted one.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from sat.errors import UserError
from sat.run.budget import GiB, available_bytes
from sat.run.files import readable_by_others, write_atomic  # noqa: F401  (readable_by_others: re-exported)

FORMAT_VERSION = 2
PENDING = ".pending"
_PENDING_FILE = re.compile(r"^(\d+)\.([A-Za-z0-9_]+)\.pt$")


# --- checksum --------------------------------------------------------------------------


def _digest(obj: Any, h: hashlib._Hash) -> None:
    """Feed ``obj`` to ``h`` in a canonical order: dict keys sorted, tensors as dtype,
    shape and raw bytes, everything else as its repr."""
    if isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode() + b":")
            _digest(obj[key], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[" if isinstance(obj, list) else b"(")
        for item in obj:
            _digest(item, h)
        h.update(b"]")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    else:
        h.update(repr(obj).encode())


def checksum(state: dict[str, Any]) -> str:
    """sha256 of ``state`` without its ``checksum`` entry."""
    h = hashlib.sha256()
    _digest({k: v for k, v in state.items() if k != "checksum"}, h)
    return h.hexdigest()


# --- writing ---------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported everywhere; the renames are still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path: Path, e: OSError) -> UserError:
    return UserError(f"could not write {path} ({e.strerror or e}); the previous checkpoint is intact. "
                     "Free space or fix the folder's permissions, then rerun the same command to continue")


def _os_error_in(e: BaseException | None) -> OSError | None:
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed
    into place (:func:`sat.run.files.write_atomic`): a crash never leaves a half-written
    file where a whole one was, and a link at ``path`` is never written through."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: torch.save(obj, f), durable=True)
    except UserError:
        raise
    except Exception as e:
        cause = _os_error_in(e)  # torch.save reports a failed write as a RuntimeError
        if cause is None:
            raise
        raise _write_error(path, cause) from None


def _link_or_copy(src: Path, dst: Path) -> None:
    """A second name for a pending file: a hard link (free) where the filesystem has them."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def save_checkpoint(state: dict[str, Any], folder: str | Path, names: Iterable[str]) -> None:
    """Write ``state`` (with its format and checksum) as ``folder/<name>.pt`` for each
    name; ``"last"`` must be among them and is published first."""
    folder, names = Path(folder), list(names)
    if "last" not in names:
        raise ValueError("a checkpoint set always includes 'last'")
    state = {"format": FORMAT_VERSION, **state}
    state["checksum"] = checksum(state)
    epoch = int(state["epoch"])
    pending = folder / PENDING
    first = pending / f"{epoch}.last.pt"
    atomic_torch_save(state, first)
    try:
        for name in names:
            if name != "last":
                _link_or_copy(first, pending / f"{epoch}.{name}.pt")
        _fsync_dir(pending)
    except OSError as e:
        raise _write_error(pending, e) from None
    _publish(folder, epoch)


def _publish(folder: Path, epoch: int) -> None:
    """Move the pending files of ``epoch`` into place, ``last.pt`` first."""
    pending = folder / PENDING
    files = sorted(pending.glob(f"{epoch}.*.pt"), key=lambda p: p.name != f"{epoch}.last.pt")
    try:
        for path in files:
            os.replace(path, folder / (path.name.split(".", 1)[1]))
        _fsync_dir(folder)
    except OSError as e:
        raise _write_error(folder, e) from None


def repair(folder: str | Path, committed_epoch: int) -> list[str]:
    """After an interruption: publish what is pending for the committed epoch (the one
    ``last.pt`` holds), drop what is pending for any other. Returns what it did."""
    folder = Path(folder)
    pending = folder / PENDING
    done: list[str] = []
    if not pending.is_dir():
        return done
    for path in sorted(pending.iterdir()):
        m = _PENDING_FILE.match(path.name)
        if m and int(m[1]) == committed_epoch and m[2] != "last":
            os.replace(path, folder / f"{m[2]}.pt")
            done.append(f"published {m[2]}.pt of epoch {committed_epoch}")
        else:
            path.unlink()
            done.append(f"discarded unfinished {path.name}")
    return done


# --- reading ---------------------------------------------------------------------------


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint written by :func:`save_checkpoint`; any problem is
    a one-line :class:`UserError` naming the file."""
    path = Path(str(path)).expanduser()
    if path.is_dir():
        hint = path / "checkpoints" / "last.pt"
        raise UserError(f"checkpoint={str(path)!r} is a folder; accepted: a checkpoint file"
                        + (f", e.g. {hint}" if hint.is_file() else " (RUN/checkpoints/last.pt)"))
    if not path.is_file():
        raise UserError(f"checkpoint={str(path)!r} does not exist; accepted: a .pt file under a run's checkpoints/ folder")
    check_fits(path, "checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's message would suggest weights_only=False, i.e. running the file's code: never.
        raise UserError(f"checkpoint={str(path)!r} is refused: it holds objects other than tensors and plain values "
                        "(nothing in it was run)") from None
    except Exception as e:
        raise UserError(f"checkpoint={str(path)!r} is damaged or not a checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION or "config" not in state:
        raise UserError(f"checkpoint={str(path)!r} is not a sat checkpoint (format {FORMAT_VERSION} with a stored config)")
    if state.get("checksum") != checksum(state):
        raise UserError(f"checkpoint={str(path)!r} is damaged: its contents do not match the checksum stored in it")
    _check_fields(state, path)
    return state


def check_fits(path: Path, key: str) -> None:
    """A file that ``torch.load`` reads whole must fit in memory: a crafted (or sparse)
    one of any size would otherwise be read before anything in it is checked."""
    size, have = path.stat().st_size, available_bytes()
    if size > have:
        raise UserError(f"{key}={str(path)!r} is {size / GiB:,.1f} GiB, more than the {have / GiB:,.1f} GiB of memory "
                        "it would be read into; accepted: a file sat wrote (a checkpoint holds the model, optimizer and "
                        "method state)")


# What every checkpoint holds, and of which type (a file may be someone else's crafting).
_FIELDS = {"epoch": int, "model": dict, "config": dict, "noise_sha256": str, "optimizer": dict, "method": dict}


def _check_fields(state: dict[str, Any], path: Path) -> None:
    for key, kind in _FIELDS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise UserError(f"checkpoint={str(path)!r} is not a sat checkpoint: its {key!r} is missing or not a "
                            f"{kind.__name__}")
    if state["epoch"] < 0:
        raise UserError(f"checkpoint={str(path)!r} is not a sat checkpoint: epoch={state['epoch']} (a checkpoint holds "
                        "the number of epochs done, 0 or more)")
    outputs = state.get("model_outputs")
    if outputs is not None and (not isinstance(outputs, int) or isinstance(outputs, bool) or not 1 <= outputs <= 10**6):
        raise UserError(f"checkpoint={str(path)!r} is not a sat checkpoint: model_outputs={outputs!r} is not a "
                        "number of classes")


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch a checkpoint file holds, or None when it cannot be read."""
    try:
        return int(load_checkpoint(path)["epoch"])
    except UserError:
        return None


# --- random number generators ------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- writing in the background ------------------------------------------------------------


def to_host(obj: Any) -> Any:
    """A copy of ``obj`` whose tensors live in host memory, detached from the training
    state (so training may go on changing its own tensors while the copy is written)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_host(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_host(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes checkpoints with :func:`save_checkpoint` from a background thread, one at a
    time and in order, so training goes on while the file is hashed and written (a
    ResNet-34 state is ~170 MB). The state is copied to host memory first. A failed
    write is raised at the next :meth:`save` or at :meth:`wait`; ``background=False``
    writes in the caller's thread."""

    def __init__(self, background: bool = True):
        import threading

        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, state: dict[str, Any], folder: str | Path, names: Iterable[str]) -> None:
        self.wait()
        state, names = to_host(state), list(names)
        if not self.background:
            save_checkpoint(state, folder, names)
            return
        import threading

        def write() -> None:
            try:
                save_checkpoint(state, folder, names)
            except BaseException as e:  # handed to the training thread at the next wait()
                self._error = e

        self._thread = threading.Thread(target=write, name="checkpoint-writer", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        """Block until the write in flight is on disk; raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
