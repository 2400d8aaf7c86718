"""Preemption: a signal asks the run to stop; it stops after the current step, writes a
checkpoint, and exits; the entry point then prints the command that continues it
(``resume=RUN_DIR``, see :mod:`sat.cli.continue_run`).

Slurm sends SIGTERM when it preempts a job (and, with ``--signal``, SIGUSR1 or, under
submitit, SIGUSR2 some time before the wall-time limit). The handler only records the
signal; the training loop polls :meth:`Preemption.requested` between steps. After the
checkpoint, :meth:`Preemption.exit` hands the signal to whatever handled it before
(submitit's handler requeues the job) and then exits with status 128 + signal number,
the status a shell reports for a job ended by that signal.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

log = logging.getLogger("sat")

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


class Preempted(SystemExit):
    """Raised (as an exit) after the checkpoint of a preempted run is written."""


class StoppedAtStart(Preempted):
    """A preemption signal while the run was starting (no checkpoint of it to write yet)."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signal = signal.Signals(signum).name


@contextlib.contextmanager
def stop_at_start() -> Iterator[None]:
    """While a run starts (reading data, building), before :class:`Preemption` takes
    over: a preemption signal stops it at once with :class:`StoppedAtStart`, so it is
    said in one line and its folder is cleaned up, rather than the process dying
    without a word and leaving a stub folder."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise StoppedAtStart(signum)

    previous = {sig: signal.signal(sig, stop) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Preemption:
    """Records preemption signals while active (a context manager).

    ``agree`` (a distributed run's, ``Distributed.signal_agreement``: this process's
    signal number, 0 for none, in; the processes' agreed one out) makes
    :meth:`requested` a collective whose answer is the agreed one alone: a signal that
    reached any process stops every process at the same step.
    """

    def __init__(self, agree: Callable[[int], int] | None = None) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._agree = agree

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc: Any) -> None:
        close = getattr(self._agree, "close", None)
        if close is not None:  # every process leaves at the same point: finish the collective in flight
            close()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            log.warning("received %s: stopping after this step to write a checkpoint", signal.Signals(signum).name)
        self.signum = signum

    def requested(self) -> bool:
        if self._agree is not None:  # every process calls this at the same points
            agreed = self._agree(self.signum or 0)
            if agreed and self.signum is None:
                self.signum = agreed  # the exit status of a process the signal did not reach
            return agreed != 0
        return self.signum is not None

    def exit(self, where: str) -> None:
        """Hand the signal on (submitit requeues the job here) and exit with 128 + signal."""
        signum = self.signum
        assert signum is not None
        previous = self._previous.get(signum)
        self.__exit__()
        log.warning("preempted: %s", where)
        if callable(previous):
            previous(signum, None)
        raise Preempted(128 + signum)
