"""Ctrl-C and SIGTERM for every command: a stop request that long work honours.

A handler that raises ``KeyboardInterrupt`` raises it wherever the main thread happens to
be; once that was inside a library's garbage-collection callback, where Python prints
and drops the exception, and the search ran on until a second SIGTERM. So inside
long work (the search loop, training steps, the dashboard's server loop, entered with
``handle_signals(graceful=True)``) the first SIGINT or SIGTERM only records a stop
request, which that work reads with :func:`check_stop` between units of work (a trial,
a training step, a poll of the server) and honours by failing or finishing the unit
cleanly and writing its outputs. A second signal means "now": the handler raises
:class:`StopRequested` at once. Outside long work the first signal raises at once, as
Python's own Ctrl-C does. Should a raise be swallowed where it landed, a third signal
ends the process on the spot.

A time budget is the other reason long work stops: inside a :func:`deadline` block,
:func:`check_stop` raises :class:`OutOfTime` once the deadline has passed, at the same
safe points. It is not a ``KeyboardInterrupt``: running out of time is the budget doing
its job, not the user stopping the process, and the exit code stays 0.

Handlers are installed for both signals whatever the process inherited: a background
job of a non-interactive shell starts with SIGINT ignored, and such a program could
otherwise not be stopped with Ctrl-C's signal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import Iterator, Optional

__all__ = ["StopRequested", "OutOfTime", "handle_signals", "deadline", "stop_requested",
           "check_stop", "stopped", "quiet_stops_in", "exit_code"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """Raised where work honours a stop request; a ``KeyboardInterrupt``, so every
    handler of Ctrl-C (the CLI's one line and exit code) handles it too."""


class OutOfTime(Exception):
    """Raised where work honours a stop request once a :func:`deadline` has passed."""


class _State:
    def __init__(self) -> None:
        self.signum: Optional[int] = None  # the first signal received
        self.count = 0
        self.graceful = False
        self.depth = 0
        self.deadline: Optional[float] = None  # time.monotonic() at which work stops


_state = _State()


def _handle(signum: int, frame) -> None:
    _state.count += 1
    if _state.signum is None:
        _state.signum = signum
    name = signal.Signals(signum).name
    if _state.graceful and _state.count == 1:
        # os.write, not print: the handler may run while the main thread is inside a
        # buffered write to stderr (the progress bar), which print would re-enter.
        os.write(2, f"\n{name}: stopping at the next safe point (send it again to stop "
                    "at once)\n".encode())
        return
    if _state.count <= 2:
        raise StopRequested(name)
    os.write(2, f"\n{name}: stopped\n".encode())
    os._exit(exit_code())


@contextlib.contextmanager
def handle_signals(*, graceful: bool) -> Iterator[None]:
    """Install the SIGINT and SIGTERM handlers (in the main thread; elsewhere a no-op)
    for the duration of the block, then restore what was there. ``graceful``: the first
    signal only requests a stop (see the module docstring). The outermost block starts
    with no request; an inner one keeps the outer one's."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    previous_graceful = _state.graceful
    if _state.depth == 0:
        _state.signum, _state.count = None, 0
    _state.depth += 1
    _state.graceful = graceful
    for signum in _SIGNALS:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _state.graceful = previous_graceful
        _state.depth -= 1


@contextlib.contextmanager
def deadline(at: Optional[float]) -> Iterator[None]:
    """Within the block, :func:`check_stop` raises :class:`OutOfTime` once
    ``time.monotonic()`` reaches ``at`` (None: no deadline of its own; an enclosing
    block's earlier deadline still holds)."""
    previous = _state.deadline
    if at is not None:
        _state.deadline = at if previous is None else min(previous, at)
    try:
        yield
    finally:
        _state.deadline = previous


def stop_requested() -> Optional[str]:
    """The name of the signal that asked this process to stop (``SIGTERM``), or None."""
    return None if _state.signum is None else signal.Signals(_state.signum).name


def check_stop() -> None:
    """Raise :class:`StopRequested` if a signal asked this process to stop, or
    :class:`OutOfTime` if the deadline of an enclosing :func:`deadline` has passed."""
    name = stop_requested()
    if name is not None:
        raise StopRequested(name)
    if _state.deadline is not None and time.monotonic() >= _state.deadline:
        raise OutOfTime("the time budget is spent")


def stopped(error: BaseException) -> bool:
    """Whether ``error`` is a stop request or arose while one was being raised: a raise
    landing inside library code can surface as another exception (inside Optuna's trial
    bookkeeping, a ``StopRequested`` became an ``UnboundLocalError``)."""
    seen: set[int] = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class _QuietStops(logging.Filter):
    """Drops a library's records once a stop was requested: they report what the stop
    broke (Optuna logs a trial that a second signal interrupted as failed, with its
    traceback), and a stop is not a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return stop_requested() is None and (error is None or not stopped(error))


def quiet_stops_in(logger_name: str) -> None:
    """Keep the handlers of ``logger_name`` quiet about a stop."""
    for handler in logging.getLogger(logger_name).handlers:
        if not any(isinstance(f, _QuietStops) for f in handler.filters):
            handler.addFilter(_QuietStops())


def exit_code() -> int:
    """The shell's code for a process ended by the signal received (130 for SIGINT,
    143 for SIGTERM); 130 when none was."""
    return 128 + (_state.signum or signal.SIGINT)
