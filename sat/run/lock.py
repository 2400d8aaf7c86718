"""One writer per run folder: a lock the process holds from before anything is written
in the folder until it exits, refusing a second process (and a folder holding links
where the framework writes)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from sat.errors import UserError
from sat.run.files import check_no_links

# The run's log handler (:class:`RunLogFile`, set up by Hydra before it writes anything
# in the folder) and the task's RunFolder both hold the lock; a flock belongs to one open
# file, so the process keeps one per folder and counts its holders.
_held: dict[str, list[int]] = {}  # resolved folder -> [fd, holders]


def _in_use(path: Path) -> UserError:
    return UserError(f"run folder {path} is in use by another training process; accepted: a folder no other run "
                     "is writing (wait for it, or choose another hydra.run.dir)")


def hold_lock(path: str | Path) -> None:
    """Lock run folder ``path`` for this process (again, if it holds it already), after
    refusing links where the framework writes; a one-line UserError if another process holds it."""
    path = Path(path)
    check_no_links(path)
    key = str(path.resolve())
    if key in _held:
        _held[key][1] += 1
        return
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _in_use(path) from None
        raise
    _held[key] = [fd, 1]


def release_lock(path: str | Path) -> None:
    key = str(Path(path).resolve())
    if key not in _held:
        return
    _held[key][1] -= 1
    if _held[key][1] <= 0:
        os.close(_held.pop(key)[0])  # closing releases the flock


def held(path: str | Path) -> bool:
    """Whether a live process (this one included) holds run folder ``path``'s lock: a run
    whose summary says ``running`` is training only then; otherwise it was killed without
    a word (OOM, a lost node, kill -9), since the lock goes with its process."""
    path = Path(path)
    if str(path.resolve()) in _held:
        return True
    try:
        fd = os.open(path / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # no lock file (a copied folder): no process holds it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)  # (closing releases a lock taken here)
    return False
