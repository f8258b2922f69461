"""What every part of the storage package shares: its error, the heartbeat's settings and
the attributes it marks trials with, and the identity of this worker."""

from __future__ import annotations

import os
import socket

from space import NasError

__all__ = ["StorageError", "worker_id", "heartbeat_settings", "HEARTBEAT_INTERVAL_S",
           "GRACE_PERIOD_S", "MAX_RETRY", "HEARTBEAT_ATTR", "STALE_ATTR"]

# Optuna suggests 60 s / 120 s; trials here last seconds to minutes, so a dead worker's
# trial should be retried sooner. NAS_HEARTBEAT_INTERVAL / NAS_HEARTBEAT_GRACE override
# them (whole seconds: Optuna's RDB heartbeat takes an integer interval).
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30
# A genome whose trial kills its worker three times (out of memory, say) is not tried again.
MAX_RETRY = 3
# Trial system attribute holding the last heartbeat of a journal-storage trial (Unix time, s).
HEARTBEAT_ATTR = "nas:heartbeat"
# Trial system attribute set on a running trial just before a worker fails it because its
# own worker died. Optuna fails the trial first and re-queues its copy a moment later; the
# mark lets the budget count the dead trial in between (see nas.trial.budget_used), so
# that no other worker spends that share on a new genome and leaves the copy unrun.
STALE_ATTR = "nas:stale"


class StorageError(NasError):
    """A storage URL that cannot be opened, or heartbeat settings that make no sense."""


def worker_id() -> str:
    """``host:pid`` of this process, recorded on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat_settings() -> tuple[int, int]:
    """``(interval, grace)`` in whole seconds, from ``NAS_HEARTBEAT_INTERVAL`` and
    ``NAS_HEARTBEAT_GRACE`` (defaults 10 and 30).

    The grace must exceed the interval, or live trials would be failed between beats."""
    values = []
    for name, default in (("NAS_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL_S),
                          ("NAS_HEARTBEAT_GRACE", GRACE_PERIOD_S)):
        text = os.environ.get(name, "").strip()
        if not text:
            values.append(default)
            continue
        try:
            values.append(int(text))
        except ValueError:
            raise StorageError(f"{name}={text!r} is not a whole number of seconds") from None
    interval, grace = values
    if not 1 <= interval <= 3600:
        raise StorageError(f"NAS_HEARTBEAT_INTERVAL={interval} must be 1..3600 seconds")
    if not interval < grace <= 86400:
        raise StorageError(f"NAS_HEARTBEAT_GRACE={grace} must be more than "
                           f"NAS_HEARTBEAT_INTERVAL ({interval}) and at most 86400 seconds")
    return interval, grace
