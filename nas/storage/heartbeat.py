"""Keeping a study's trials honest when workers die: the heartbeat of every storage kind,
and failing and re-queueing the trials of dead workers.

RDB storages use Optuna's own heartbeat table; journal storages, which have none in
Optuna, get the same mechanism from :class:`HeartbeatJournalStorage` (a system attribute on
the trial). Either way Optuna's ``study.optimize`` starts the heartbeat thread and fails
stale trials before each new trial; :func:`wait_for_running_trials` and
:func:`fail_dead_local_workers` cover the moments when no trial is starting."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Optional

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from ..signals import stop_requested
from .adapter import stale_trial_ids, storage_of
from .base import HEARTBEAT_ATTR, HEARTBEAT_INTERVAL_S, MAX_RETRY, STALE_ATTR

__all__ = ["requeue", "HeartbeatRDBStorage", "HeartbeatJournalStorage", "fail_stale_trials",
           "fail_dead_local_workers", "wait_for_running_trials", "taken_as_stale"]

log = logging.getLogger(__name__)


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue the genome of a trial whose worker died, at most ``MAX_RETRY`` times.

    Like Optuna's ``RetryHeartbeatStaleTrialCallback`` (the same ``failed_trial`` and
    ``retry_history`` system attributes, so its static helpers read them), but the copy
    starts without the dead run's user attributes: a stale ``worker``, ``screened`` or
    ``accuracy`` on the queued trial would mislead the budget and the dead-worker check
    until the new run overwrote them."""
    system_attrs = {"failed_trial": trial.number, "retry_history": [],
                    **{k: v for k, v in trial.system_attrs.items()
                       if k not in (HEARTBEAT_ATTR, STALE_ATTR)}}
    system_attrs["retry_history"] = [*system_attrs["retry_history"], trial.number]
    if len(system_attrs["retry_history"]) > MAX_RETRY:
        log.warning("trial %d: its genome killed %d workers; not retried again", trial.number,
                    len(system_attrs["retry_history"]))
        return
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        system_attrs=system_attrs))


def _mark_stale(storage: BaseStorage, trial_ids: list[int]) -> list[int]:
    """Mark the trials about to be failed for a dead worker (:data:`STALE_ATTR`); returns
    those still running. Every path that fails such a trial, Optuna's own before each new
    trial included, asks the storage for stale trials first, so the mark always precedes
    the failure."""
    marked = []
    for trial_id in trial_ids:
        try:
            storage.set_trial_system_attr(trial_id, STALE_ATTR, True)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it meanwhile
        marked.append(trial_id)
    return marked


class HeartbeatRDBStorage(RDBStorage):
    """Optuna's RDB storage, marking stale trials before they are failed (:func:`_mark_stale`)."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return _mark_stale(self, super()._get_stale_trial_ids(study_id))


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal storage with Optuna's heartbeat protocol (Optuna 5 gives journals none).

    ``record_heartbeat`` writes the wall-clock time to the trial's ``nas:heartbeat`` system
    attribute; a running trial whose last beat (or, before its first beat, its start) is
    older than the grace period is stale. Workers on several machines sharing the journal
    over a network file system need clocks in step (NTP) to well within the grace period."""

    def __init__(self, backend: optuna.storages.journal.BaseJournalBackend, *,
                 heartbeat_interval: int, grace_period: int,
                 stale_trial_callback: Optional[Callable[[optuna.Study, FrozenTrial], None]]
                 ) -> None:
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker judged this trial stale; Optuna's RDB beat is silent too

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if beat is None and trial.datetime_start is not None:
                beat = trial.datetime_start.timestamp()  # naive local time, as the journal keeps it
            if beat is not None and now - beat > self.grace_period:
                stale.append(trial._trial_id)
        return _mark_stale(self, stale)

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
            self) -> Optional[Callable[[optuna.Study, FrozenTrial], None]]:
        return self.stale_trial_callback


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail and re-queue the running trials whose heartbeat is older than the grace period,
    on any machine. Optuna does this before each trial it starts; this is for the moments
    when no trial is starting. Returns the numbers of the trials failed here."""
    failed = []
    for trial_id in stale_trial_ids(study):
        if _fail(study, trial_id):
            failed.append(storage_of(study).get_trial(trial_id).number)
    return failed


def fail_dead_local_workers(study: optuna.Study) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker is gone: on *this* host at once (the
    process no longer exists), anywhere else once its heartbeat is older than the grace.

    The heartbeat catches dead workers anywhere, but only after the grace period; a user
    who kills a search and starts it again should not wait for that. Like a heartbeat
    failure, the trial is left without a ``fail_reason`` (that attribute marks evaluations
    that failed on their own) and marked :data:`STALE_ATTR`: it holds its share of the
    budget until its re-queued copy exists, which then holds it instead. Returns the
    numbers of the trials failed here.
    """
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker", "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or _process_alive(int(pid)):
            continue
        if _mark_stale(study._storage, [trial._trial_id]) and _fail(study, trial._trial_id):
            failed.append(trial.number)
            log.info("trial %d of dead worker %s failed and re-queued", trial.number, owner)
    return failed + fail_stale_trials(study)


def wait_for_running_trials(study: optuna.Study, *, timeout: Optional[float] = None) -> list[int]:
    """Wait until no trial of the study is running, failing and re-queueing those whose
    heartbeat goes stale meanwhile.

    A worker that finds the budget spent calls this before it stops: trials still running
    elsewhere hold part of the budget, and if their worker died, somebody must notice and
    run them again. Returns at once with the numbers of trials failed here (the caller
    then has budget to spend on their re-queued copies), or ``[]`` when nothing is running
    any more or ``timeout`` seconds have passed."""
    interval = (study._storage.get_heartbeat_interval()
                if is_heartbeat_enabled(study._storage) else HEARTBEAT_INTERVAL_S)
    poll = max(0.2, min(2.0, interval / 2))
    deadline = None if timeout is None else time.monotonic() + timeout
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if stop_requested():
            return []  # the caller stops too; the trials running elsewhere go on
        failed = fail_stale_trials(study)
        if failed:
            log.info("re-queued trial(s) %s whose worker stopped beating", failed)
            return failed
        if deadline is not None and time.monotonic() >= deadline:
            return []
        time.sleep(poll)
    return []


def taken_as_stale(study: optuna.Study, trial_id: int) -> bool:
    """Whether another worker failed this trial as stale and re-queued it. The worker
    running it may be alive all the same: on a machine overloaded or suspended for longer
    than the grace period its heartbeat lapses, and its own writes to the trial then
    fail."""
    trial = storage_of(study).get_trial(trial_id)
    return trial.state == TrialState.FAIL and STALE_ATTR in trial.system_attrs


def _fail(study: optuna.Study, trial_id: int) -> bool:
    """Mark a running trial failed and re-queue it; False if another worker got there first."""
    try:
        if not study._storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    requeue(study, study._storage.get_trial(trial_id))
    return True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
