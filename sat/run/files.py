"""Writing into a run folder, which may be a copy someone else made: never through a link.

A run folder is untrusted input: a copied folder whose ``.hydra/config.yaml`` is a
symlink to ``~/.bashrc`` must not make a run write there. So every file the framework
writes in a run folder goes through :func:`write_atomic` (a temporary file in the same
folder, renamed over the target: a rename replaces a link, it never writes through it)
or, for the logs that grow line by line, :func:`open_append` (``O_NOFOLLOW``: an append
cannot be a rename). :func:`check_no_links` refuses, in one line, a run folder holding
links where the framework writes, before anything is written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from sat.errors import UserError

# The folders of a run where the framework writes (checked entry by entry).
WRITTEN_FOLDERS = ("", ".hydra", "checkpoints", "checkpoints/.pending")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable_by_others(fd: int) -> None:
    """Give a temporary file (mkstemp: 0600) the mode a plain ``open`` would have given
    it, so colleagues sharing a run folder can read its files."""
    os.fchmod(fd, 0o666 & ~_umask())


def _link_error(link: Path) -> UserError:
    try:
        target = f" -> {os.readlink(link)}"
    except OSError:
        target = ""
    return UserError(f"{link}{target} is a link where sat writes, and sat never writes through links; accepted: a run "
                     "folder of plain files and folders (replace the link by a copy, or use another folder)")


def _refuse_link(path: Path) -> None:
    """``path`` and the folder it is written in must not be links (the run folder itself may be)."""
    for p in (path, path.parent):
        if p.is_symlink():
            raise _link_error(p)


def check_no_links(folder: str | Path) -> None:
    """Refuse a run folder holding a link where the framework writes (its top level,
    ``.hydra/``, ``checkpoints/``), in one line naming the link."""
    folder = Path(folder)
    for sub in WRITTEN_FOLDERS:
        where = folder / sub if sub else folder
        if sub and where.is_symlink():
            raise _link_error(where)
        try:
            entries = list(os.scandir(where))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_symlink():
                raise _link_error(Path(entry.path))


Writer = Callable[[IO[bytes]], Any]


def write_atomic(path: str | Path, data: bytes | str | Writer, *, durable: bool = False) -> None:
    """Write ``data`` (bytes, text as UTF-8, or a function writing to a binary file) to a
    temporary file beside ``path``, then rename it over ``path``: readers never see a
    half-written file, and a link at ``path`` is refused, never followed. ``durable``:
    flushed to disk before the rename (checkpoints)."""
    path = Path(path)
    _refuse_link(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        readable_by_others(fd)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, write: Callable[[io.StringIO], Any]) -> None:
    """:func:`write_atomic` for text made by ``write`` into a string buffer (csv writers)."""
    buffer = io.StringIO(newline="")
    write(buffer)
    write_atomic(path, buffer.getvalue())


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> None:
    """A CSV file, atomically: ``header``, then ``rows`` (lists in the header's order, or
    dicts by column name, missing columns empty)."""
    def table(f: io.StringIO) -> None:
        plain, named = csv.writer(f), csv.DictWriter(f, fieldnames=list(header), restval="")
        plain.writerow(header)
        for row in rows:
            (named.writerow if isinstance(row, Mapping) else plain.writerow)(row)

    write_text_atomic(path, table)


def open_append(path: str | Path, encoding: str | None = "utf-8", errors: str | None = None) -> IO[str]:
    """``path`` opened for appending text, refused (never followed) when it is a link."""
    path = Path(path)
    _refuse_link(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as e:
        if path.is_symlink():  # created between the check and the open
            raise _link_error(path) from None
        raise UserError(f"cannot append to {path} ({e.strerror or e}); accepted: a writable run folder") from None
    return os.fdopen(fd, "a", encoding=encoding, errors=errors)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Readers (sat.report, a watching user) never see a half-written file."""
    write_atomic(path, json.dumps(obj, indent=2))
