"""Opening Optuna storages from the command line, keeping a study's trials honest when
workers die, and the one adapter to Optuna's private names.

``--storage`` accepts any Optuna RDB URL (``sqlite:///...``, ``postgresql://...``) or
``journal:PATH`` for a journal file. Every storage gets a heartbeat: each running trial
records a timestamp every ``NAS_HEARTBEAT_INTERVAL`` seconds (default 10), and a trial whose
timestamp is older than ``NAS_HEARTBEAT_GRACE`` seconds (default 30) is failed and
re-queued by the next worker that looks. RDB storages use Optuna's own heartbeat table;
journal storages, which have none in Optuna, get the same mechanism from
:class:`HeartbeatJournalStorage` (a system attribute on the trial). Either way Optuna's
``study.optimize`` starts the heartbeat thread and fails stale trials before each new
trial, so the search loop needs no extra call per trial; a worker that finds the budget
spent calls :func:`wait_for_running_trials` so that a dead worker's trial, which still
holds part of the budget, is noticed and run again rather than left RUNNING. SQLite
studies run in write-ahead-log mode (:mod:`.opening`).

Passwords never reach logs or messages: :func:`open_storage` registers each URL's password
with :mod:`nas.redact`, whose :func:`mask_url` hides it. Readers (``nas report``, ``nas
dashboard``) open storages with ``read_only=True``: nothing is created or converted, and a
file that is not an Optuna study is refused untouched. A journal that ends in a torn record
(a writer died mid-line) is cut back to its last whole record before anything is appended
to it (:mod:`.journal`), also when a writer opens it.

The package: :mod:`.opening` (URLs to storages), :mod:`.heartbeat` (dead workers),
:mod:`.journal` (torn journal records), :mod:`.adapter` (every Optuna private name the rest
of the program needs: nothing outside this package touches one).
"""

from ..redact import mask_url
from .adapter import (count_trials_with_user_attrs, is_requeued_copy, stale_trial_ids,
                      storage_of, study_id, study_names, study_system_attrs, trial_id, trials_without_user_attr, with_trial_cache,
                      without_trials_marked)
from .base import (GRACE_PERIOD_S, HEARTBEAT_ATTR, HEARTBEAT_INTERVAL_S, MAX_RETRY, STALE_ATTR,
                   StorageError, heartbeat_settings, worker_id)
from .heartbeat import (HeartbeatJournalStorage, HeartbeatRDBStorage, fail_dead_local_workers,
                        fail_stale_trials, requeue, taken_as_stale, wait_for_running_trials)
from .opening import open_storage

__all__ = ["StorageError", "mask_url", "open_storage", "worker_id", "fail_dead_local_workers",
           "fail_stale_trials", "wait_for_running_trials", "requeue", "taken_as_stale",
           "heartbeat_settings",
           "HeartbeatJournalStorage", "HeartbeatRDBStorage", "HEARTBEAT_INTERVAL_S",
           "GRACE_PERIOD_S", "MAX_RETRY", "HEARTBEAT_ATTR", "STALE_ATTR", "storage_of",
           "study_id", "trial_id", "study_system_attrs", "stale_trial_ids", "is_requeued_copy", "study_names", "trials_without_user_attr",
           "with_trial_cache", "count_trials_with_user_attrs", "without_trials_marked"]
