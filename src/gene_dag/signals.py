"""Stopping on SIGTERM / SIGINT / SIGHUP as an exception, so long steps can save their state first.

A cluster scheduler sends SIGTERM at a job's time limit or on preemption, Snakemake sends it
to its jobs on Ctrl-C, and a terminal closing sends SIGHUP. Python's default for SIGTERM is
to die at once, losing the work since the last checkpoint; inside :func:`stop_on_signals`
each of these raises :class:`Interrupted` instead, which unwinds through ``finally`` blocks
(temporary files are removed) and ``except BaseException`` handlers (the solver writes its
checkpoint) before the command exits with status 128 + the signal number.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: The signals that stop a step cleanly.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(BaseException):
    """Raised in the main thread when a stop signal arrives.

    A ``BaseException`` (like ``KeyboardInterrupt``), so the ``except Exception`` clauses
    that turn library errors into user messages do not mistake it for bad input.
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """The shell convention for a death by this signal: 128 + its number."""
        return 128 + self.signum


def _raise(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM, SIGINT and SIGHUP raise :class:`Interrupted`.

    The previous handlers are restored on exit. Outside the main thread (where Python
    cannot install handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
