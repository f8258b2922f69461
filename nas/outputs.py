"""How a command's files reach the disk: all of them or none, only over regular files, and
no empty folders left behind by a command that fails.

Every file a command writes goes through :func:`publish` (``nas.common.atomic_write_*``
publish one file). It first checks every target: a path may name a missing file or a
regular one (through a symbolic link too); a device, a folder, a FIFO or a socket is
refused with one line, so ``--out /dev/null`` can never replace the system's device node
with a file. It then writes each file under a temporary name in its own folder and, once
all are complete, renames them over their targets. A full disk or any other failure while
writing removes the temporary files and changes nothing; SIGINT, SIGTERM and SIGHUP wait
until the files are published (or removed), so a signal never leaves half a family of
files, or a temporary file, behind. Only SIGKILL between two renames can.

:func:`command_outputs` wraps a whole command (``nas.cli``): folders the command created
and left empty are removed when it fails, and the faults of the machine rather than of
the input (a full disk, a quota, a read-only file system, also as SQLite reports them)
become one :class:`OutputError` line instead of a traceback; and warnings logged before
the command's progress shows are held, printed when it succeeds and dropped when it
fails, so that a failed command prints its one error line alone.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import sqlite3
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

from space import NasError

from .redact import stream_handlers

__all__ = ["OutputError", "publish", "check_target", "make_folders", "command_outputs",
           "environment_error", "passing_machine_faults"]

PathLike = Union[str, os.PathLike]
T = TypeVar("T")

# Errors of the machine, not of the input: the same command succeeds once there is room.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                       errno.EROFS: "the file system is read-only",
                       errno.EFBIG: "the file is larger than the file system allows"}
# How SQLite words the same faults (SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR).
_SQLITE_FAULTS = (("database or disk is full", "the disk under the SQLite study is full"),
                  ("attempt to write a readonly database", "the SQLite study is read-only"),
                  ("disk i/o error", "the disk under the SQLite study failed to write"))
_DEFERRED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                          if hasattr(signal, name))

# Folders this process created for its outputs, outermost first (see command_outputs).
_created_folders: list[Path] = []


class OutputError(NasError):
    """An output that cannot be written: a target that is not a regular file, a full disk,
    a read-only file system."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_target(path: PathLike) -> Path:
    """The file to write for ``path``: ``path`` itself when nothing or a regular file is
    there, the file a symbolic link leads to when that is a regular file. Anything else
    (a device, a folder, a FIFO, a socket, or a link to one of those or to nothing) is an
    :class:`OutputError`: replacing it would destroy something that is not a file."""
    target = Path(path)
    try:
        info = target.lstat()
    except FileNotFoundError:
        return target
    except OSError as error:
        raise OutputError(f"cannot write {str(target)!r}: {error.strerror or error}") from None
    if stat.S_ISREG(info.st_mode):
        return target
    if stat.S_ISLNK(info.st_mode):
        resolved = target.resolve()
        try:
            mode = resolved.stat().st_mode
        except OSError:
            raise OutputError(f"{str(target)!r} is a symbolic link to {str(resolved)!r}, which "
                              "does not exist; remove the link or write elsewhere") from None
        if stat.S_ISREG(mode):
            return resolved
        raise OutputError(f"{str(target)!r} leads to {str(resolved)!r}, {_kind(mode)}, which "
                          "is never replaced by an output; write to a file name instead")
    raise OutputError(f"{str(target)!r} is {_kind(info.st_mode)}, which is never replaced by "
                      "an output; write to a file name instead")


def make_folders(folder: PathLike) -> Path:
    """Create ``folder`` and its missing parents, remembering those this process made so
    that a failed command can take them away again (:func:`command_outputs`)."""
    folder = Path(folder)
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            candidate.mkdir()
        except FileExistsError:
            if not candidate.is_dir():
                raise OutputError(f"cannot create folder {str(candidate)!r}: a file of that "
                                  "name is in the way") from None
            continue  # made by another process meanwhile: not ours to remove
        except OSError as error:
            raise OutputError(f"cannot create folder {str(candidate)!r}: "
                              f"{error.strerror or error}") from None
        _created_folders.append(candidate)
    return folder


def publish(files: Mapping[PathLike, bytes]) -> list[Path]:
    """Write every file of ``files`` (path -> content), all or none: see the module's
    docstring. Returns the paths of ``files`` as :class:`~pathlib.Path`."""
    targets = {check_target(path): data for path, data in files.items()}
    temporary: dict[Path, str] = {}
    with _signals_deferred():
        current = None
        try:
            for current, data in targets.items():
                make_folders(current.parent)
                temporary[current] = _write_temporary(current, data)
            for current, name in temporary.items():
                os.replace(name, current)
        except BaseException as error:
            for name in temporary.values():
                Path(name).unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise OutputError(f"cannot write {str(current)!r}: "
                                  f"{error.strerror or error}") from None
            raise
    return [Path(path) for path in files]


def _write_temporary(target: Path, data: bytes) -> str:
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp creates 0600 files; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return name


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then deliver them. Python runs
    signal handlers in the main thread only, so elsewhere there is nothing to hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for number in _DEFERRED_SIGNALS:
        handler = signal.getsignal(number)
        if handler in (signal.SIG_IGN, None):  # ignored, or not set from Python
            continue
        previous[number] = signal.signal(number, lambda received, _frame: caught.append(received))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)


def environment_error(error: BaseException) -> Optional[OutputError]:
    """One line for a fault of the machine (full disk, quota, read-only file system) found
    anywhere in ``error``'s chain, or None for anything else."""
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _ENVIRONMENT_ERRNOS:
            where = f" while writing {str(current.filename)!r}" if current.filename else ""
            return OutputError(f"{_ENVIRONMENT_ERRNOS[current.errno]}{where}; make room (or "
                               "write elsewhere) and run the command again")
        if isinstance(current, sqlite3.Error):
            text = str(current).lower()
            for words, reason in _SQLITE_FAULTS:
                if words in text:
                    return OutputError(f"{reason} ({current}); make room and run the "
                                       "command again: the study keeps every trial it "
                                       "recorded")
        # SQLAlchemy keeps the driver's exception in .orig
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


class _MachineFault(BaseException):
    """An :class:`OutputError` on its way past code that handles every ``Exception``."""


def passing_machine_faults(function: Callable[..., T]) -> Callable[..., T]:
    """``function``, whose faults of the machine pass through the code that calls it as
    one :class:`OutputError` (restored by :func:`command_outputs`). For callbacks such as
    Optuna's objective: Optuna would record a failed trial and log the fault with a
    traceback, and on a full disk recording the trial fails too. The trial stays
    running, and the next search on the study fails and re-queues it (its worker is
    gone)."""

    @functools.wraps(function)
    def passing(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except NasError:
            raise
        except Exception as error:
            fault = environment_error(error)
            if fault is None:
                raise
            raise _MachineFault(fault) from None

    return passing


# Warnings logged before a command's progress shows are held this long at most: its
# user errors are found by then, and long work must show its warnings as they come.
HOLD_SECONDS = 10.0


class _HeldWarnings:
    """Holds the warnings logged through every stream handler until :meth:`release`, which
    the command's first write to stderr (a progress bar, a note) or :data:`HOLD_SECONDS`
    calls (see :func:`command_outputs`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holding = True
        self.held: list[tuple[logging.Handler, logging.LogRecord]] = []
        self.filters = {handler: self._filter_for(handler)
                        for handler in dict.fromkeys(stream_handlers())}
        for handler, hold in self.filters.items():
            handler.addFilter(hold)
        self.timer = threading.Timer(HOLD_SECONDS, self.release)
        self.timer.daemon = True
        self.timer.start()

    def _filter_for(self, handler: logging.Handler) -> Callable[[logging.LogRecord], bool]:
        def hold(record: logging.LogRecord) -> bool:
            with self.lock:
                if self.holding and record.levelno >= logging.WARNING:
                    self.held.append((handler, record))
                    return False
            return True

        return hold

    def release(self) -> None:
        with self.lock:
            held, self.held, self.holding = self.held, [], False
        for handler, record in held:
            handler.handle(record)

    def close(self) -> None:
        self.timer.cancel()
        for handler, hold in self.filters.items():
            handler.removeFilter(hold)


class _ReleasingStream:
    """``sys.stderr``, releasing the held warnings at the command's first write to it."""

    def __init__(self, stream: Any, held: _HeldWarnings) -> None:
        self._stream, self._held = stream, held

    def write(self, text: str) -> int:
        if text and self._held.holding:
            self._held.release()
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def command_outputs() -> Iterator[None]:
    """Run a command. When it fails: the folders it created that are still empty are
    removed, a fault of the machine becomes one :class:`OutputError` (see the module
    docstring), and the warnings it logged before its progress showed (a first write to
    stderr, or :data:`HOLD_SECONDS`) are dropped, so that its error is the one line it
    prints (``-v`` shows them all as they come). When it succeeds, they are printed at
    the end."""
    _created_folders.clear()
    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    held = None if verbose else _HeldWarnings()
    stderr = sys.stderr
    if held is not None:
        logging.captureWarnings(True)  # Python's warnings, held like the others
        sys.stderr = _ReleasingStream(stderr, held)
    try:
        yield
    except BaseException as error:
        for folder in reversed(_created_folders):
            try:
                folder.rmdir()  # only when empty: what the command wrote stays
            except OSError:
                pass
        if isinstance(error, _MachineFault):
            translated: Optional[OutputError] = error.args[0]
        elif isinstance(error, Exception) and not isinstance(error, NasError):
            translated = environment_error(error)
        else:
            translated = None
        if translated is not None:
            raise translated from None
        raise
    else:
        if held is not None:
            held.release()
    finally:
        _created_folders.clear()
        if held is not None:
            sys.stderr = stderr
            logging.captureWarnings(False)
            held.close()
