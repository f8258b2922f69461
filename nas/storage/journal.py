"""Repairing a journal storage whose writer died mid-record.

A writer killed (or out of disk) mid-append leaves the file ending in part of a line.
Optuna's reader skips such a last line, but a record appended after it would put the
broken line in the middle, and from then on the file cannot be replayed: every trial in it
is locked away. :class:`RepairingLock` cuts the torn tail off before any append."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import optuna

from ..outputs import OutputError, publish
from .base import StorageError

__all__ = ["RepairingLock"]

log = logging.getLogger(__name__)


class RepairingLock(optuna.storages.journal.JournalFileSymlinkLock):
    """Optuna's journal lock, which also cuts off a torn record before the holder appends.

    A writer killed (or out of disk) mid-append leaves the file ending in part of a line.
    Optuna's reader skips such a last line, but a record appended after it would put the
    broken line in the middle, and from then on the file cannot be replayed: every trial
    in it is locked away. Every append takes this lock, so no append can follow a torn
    tail: the torn bytes go to ``<journal>.torn-<time>`` and the file is cut back to its
    last whole record. A file with no whole record is not a journal to repair."""

    def acquire(self) -> bool:
        super().acquire()
        try:
            _cut_torn_tail(Path(self._lock_target_file))
        except BaseException:
            self.release()
            raise
        return True


def _cut_torn_tail(path: Path) -> None:
    with open(path, "rb+") as stream:
        size = stream.seek(0, os.SEEK_END)
        if size == 0:
            return
        stream.seek(size - 1)
        if stream.read(1) == b"\n":
            return
        keep = _end_of_last_line(stream, size)
        if keep == 0:
            raise StorageError(f"{str(path)!r} holds no whole journal record; point journal: at "
                               "a file that `nas search` wrote, or at a new file")
        stream.seek(keep)
        torn = stream.read()
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        try:
            publish({backup: torn})
        except OutputError as error:
            raise StorageError(f"{str(path)!r} ends in a torn record ({len(torn)} bytes a "
                               f"writer left when it died), and no copy of them can be kept "
                               f"({error}); make room and run `nas search` again to repair "
                               "it") from None
        stream.truncate(keep)
        stream.flush()
        os.fsync(stream.fileno())
    log.warning("journal %s ended in a torn record (%d bytes a writer left when it died); "
                "moved them to %s and cut the journal back to its last whole record",
                path, len(torn), backup)


def _end_of_last_line(stream, size: int, chunk: int = 1 << 16) -> int:
    """The offset just past the last newline of the file, 0 if it has none."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        stream.seek(start)
        at = stream.read(end - start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0
