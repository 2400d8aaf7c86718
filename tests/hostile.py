"""Hostile inputs for the red-team tests (test_untrusted.py, test_bad_input.py): pickle
payloads that leave a marker file, checkpoints re-saved with an edited stored config and a
valid checksum, byte-level damage, and the check every refused input must pass (exit
status 2, one ``error:`` line, no traceback)."""

from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sat.run.checkpoint import checksum


class Payload:
    """Unpickling this object (with a full unpickler) writes ``marker``: the proof that a
    file ran code. It names only ``builtins.exec``, so no test module is needed to load it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def torch_payload(marker: Path) -> bytes:
    """A torch.save file (zip format) whose loading with weights_only=False runs the payload."""
    buf = io.BytesIO()
    torch.save({"model": Payload(marker)}, buf)
    return buf.getvalue()


def pickle_payload(marker: Path) -> bytes:
    """A plain pickle (protocol 2, as CIFAR batches are written) that runs the payload."""
    return pickle.dumps(Payload(marker), protocol=2)


def torch_load_node(marker: Path) -> dict[str, Any]:
    """The issue's config node: Hydra's instantiate of it calls torch.load(weights_only=False)
    on base64-decoded payload bytes, i.e. runs the payload."""
    return {"_target_": "torch.load", "weights_only": False,
            "f": {"_target_": "io.BytesIO",
                  "initial_bytes": {"_target_": "base64.b64decode",
                                    "s": base64.b64encode(torch_payload(marker)).decode()}}}


def write_evil_cifar(root: Path, marker: Path) -> Path:
    """A CIFAR-10 folder whose every batch file is a pickle payload; returns ``root``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle_payload(marker))
    return root


def craft(base: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """``base`` loaded with weights_only=True, ``edit`` applied to the whole state, re-saved
    with a valid checksum: a file that loads, so only the registry can refuse it."""
    state = torch.load(base, map_location="cpu", weights_only=True)
    edit(state)
    state["checksum"] = checksum(state)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dst)
    again = torch.load(dst, map_location="cpu", weights_only=True)
    assert again["checksum"] == checksum(again)  # the checksum does not refuse it
    return dst


# --- byte-level damage --------------------------------------------------------------------


def zip_entries(data: bytes) -> dict[str, tuple[int, int]]:
    """Each entry of a torch zip file -> (offset of its stored bytes, their length)."""
    entries = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, info
            name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
            start = info.header_offset + 30 + name_len + extra_len
            entries[info.filename] = (start, info.file_size)
    return entries


def _raw(t: torch.Tensor) -> bytes:
    return t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""


def same_state(a: Any, b: Any) -> bool:
    """Deep equality of two loaded checkpoints (tensors by dtype, shape and bytes)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and _raw(a) == _raw(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def is_damaged(data: bytes, original: dict[str, Any], scratch: Path) -> bool:
    """Whether ``data`` (a modified checkpoint) differs from ``original`` as torch sees it:
    it does not load with weights_only=True, or it loads to another state."""
    scratch.write_bytes(data)
    try:
        state = torch.load(scratch, map_location="cpu", weights_only=True)
    except Exception:
        return True
    return not same_state(state, original)


# --- what a refused input must look like -----------------------------------------------------


def one_line_error(proc: subprocess.CompletedProcess, *contains: str, absent: tuple[str, ...] = (),
                   out: Path | None = None) -> str:
    """Exit status 2, exactly one ``error:`` line on stderr (containing ``contains``, not
    ``absent``), no traceback anywhere (stdout, stderr, the run folder's log). Returns it."""
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == 2, shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, shown
    for text in contains:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    for text in absent:
        assert text not in errors[0], f"{text!r} in {errors[0]!r}"
    if out is not None:
        for log in out.glob("*.log"):
            assert "Traceback" not in log.read_text(errors="replace"), log
    return errors[0]


def composition_error(proc: subprocess.CompletedProcess) -> None:
    """Hydra's own refusal of a config it cannot compose: exit 2, its message, no traceback."""
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == 2, shown
    assert "Traceback" not in proc.stdout + proc.stderr and proc.stderr.strip(), shown


# --- memory bombs, run where they cannot take the machine ------------------------------------------


ROOT = Path(__file__).resolve().parents[1]
CAP_GIB = 4  # torch itself maps ~3 GiB of address space


def run_capped(code: str, gib: int = CAP_GIB) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose address space is capped at ``gib`` GiB."""
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({gib} << 30, {gib} << 30))\n"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=env)


def refused(proc: subprocess.CompletedProcess, *contains: str) -> str:
    """The capped code printed a one-line UserError (and nothing ran out of memory)."""
    shown = f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0 and "MemoryError" not in proc.stderr, shown
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("refused: ") and "\n" not in line, shown
    for text in contains:
        assert text in line, shown
    return line


@contextlib.contextmanager
def within(seconds: float):
    """Fail (not hang) when the block takes longer than ``seconds``."""
    def expired(*_):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
