"""Opening Optuna storages from the command line, and keeping a study's trials honest when
workers die.

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
studies run in write-ahead-log mode (see :func:`_use_write_ahead_log`).

Passwords never reach logs or messages: :func:`open_storage` registers each URL's password
with :mod:`nas.redact`, whose :func:`mask_url` hides it. Readers (``nas report``, ``nas
dashboard``) open storages with ``read_only=True``: nothing is created or converted, and a
file that is not an Optuna study is refused untouched. A journal that ends in a torn record
(a writer died mid-line) is cut back to its last whole record before anything is appended
to it (:class:`_RepairingLock`), also when a writer opens it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from space import NasError

from .outputs import OutputError, publish
from .redact import mask_url, register_url
from .signals import stop_requested

__all__ = ["StorageError", "mask_url", "open_storage", "default_storage_url", "worker_id",
           "fail_dead_local_workers", "fail_stale_trials", "wait_for_running_trials",
           "requeue", "heartbeat_settings", "HeartbeatJournalStorage", "HEARTBEAT_INTERVAL_S",
           "GRACE_PERIOD_S", "MAX_RETRY", "HEARTBEAT_ATTR", "STALE_ATTR",
           "HeartbeatRDBStorage"]

log = logging.getLogger(__name__)

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
# mark lets the budget count the dead trial in between (see nas.search.budget_used), so
# that no other worker spends that share on a new genome and leaves the copy unrun.
STALE_ATTR = "nas:stale"


class StorageError(NasError):
    """A storage URL that cannot be opened, or heartbeat settings that make no sense."""


# How SQLite and PostgreSQL word a lost race to create Optuna's tables.
_SCHEMA_RACE = re.compile(r"already exists|UNIQUE constraint failed: alembic_version|"
                          r"duplicate key value violates unique constraint", re.IGNORECASE)
_SCHEMA_ATTEMPTS = 5


def default_storage_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


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


def open_storage(url: str, *, read_only: bool = False) -> BaseStorage:
    """An Optuna storage for ``url`` with the heartbeat on; one clear :class:`StorageError`
    if it cannot be used. The error text never contains the password.

    ``read_only``: for readers (report, dashboard). Nothing is created: no file, no
    Optuna tables, no change of SQLite's journal mode, no journal repair; an SQLite file
    without Optuna's tables (an empty file too) is refused before it is opened for writing."""
    register_url(url)
    interval, grace = heartbeat_settings()
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):]).expanduser()
        if not str(path).strip() or path.is_dir():
            raise StorageError(f"journal storage {url!r} needs a file path, e.g. "
                               "journal:runs/study.log")
        if not path.parent.is_dir():
            raise StorageError(f"journal folder {str(path.parent)!r} does not exist; create it "
                               "or point journal: at an existing folder")
        if read_only and not path.is_file():
            raise StorageError(f"journal file {str(path)!r} does not exist; check --storage")
        lock = _RepairingLock(str(path))
        try:
            backend = optuna.storages.journal.JournalFileBackend(str(path), lock_obj=lock)
        except OSError as error:
            raise StorageError(f"cannot open journal storage {str(path)!r}: "
                               f"{error.strerror or error}") from None
        try:  # replays the whole file, so a file that is not a journal fails here
            storage = HeartbeatJournalStorage(backend, heartbeat_interval=interval,
                                              grace_period=grace, stale_trial_callback=requeue)
        except Exception as error:  # json, unicode, key and type errors of a foreign file
            raise StorageError(f"{str(path)!r} is not an Optuna journal file ({type(error).__name__} "
                               "while replaying it); point journal: at a file that `nas search` "
                               "wrote, or at a new file") from None
        if not read_only:
            lock.acquire()  # repairs a torn tail now, before any trial starts
            lock.release()
        return storage
    if "://" not in url:
        raise StorageError(f"storage {mask_url(url)!r} is neither an RDB URL "
                           "(sqlite:///PATH, postgresql://USER:PASSWORD@HOST/DB) nor journal:PATH")
    from sqlalchemy.engine import make_url  # optuna depends on SQLAlchemy

    try:
        parsed = make_url(url)
    except Exception:  # the parser's message quotes pieces of the URL, password included
        raise StorageError(f"storage URL {mask_url(url)!r} is malformed; write it as "
                           "DIALECT://USER:PASSWORD@HOST:PORT/DATABASE and percent-encode "
                           "special characters in the password (@ as %40, : as %3A)") from None
    if parsed.host and "@" in parsed.host:
        raise StorageError(f"storage URL {mask_url(url)!r}: the password holds an unencoded '@', "
                           "so the rest of it would be read as the host; percent-encode it "
                           "(@ as %40)")
    sqlite = parsed.get_backend_name() == "sqlite"
    if read_only and sqlite:
        _check_optuna_sqlite(parsed.database or "", url)
    engine_url = _with_installed_postgres_driver(url) if parsed.drivername == "postgresql" else url
    if url.startswith("sqlite"):
        # Several workers on one SQLite file wait for the lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    for attempt in range(_SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                # "heartbeat_interval is experimental" on every start would bury real messages.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = HeartbeatRDBStorage(engine_url, engine_kwargs=engine_kwargs,
                                              heartbeat_interval=interval, grace_period=grace,
                                              heartbeat_stale_trial_callback=requeue,
                                              skip_table_creation=read_only)
            break
        except Exception as error:  # driver errors have no common base; all mean "cannot open"
            while error.__cause__ is not None:  # Optuna wraps the driver's words in its own
                error = error.__cause__
            text = str(error).strip()
            if _SCHEMA_RACE.search(text) and attempt + 1 < _SCHEMA_ATTEMPTS:
                # Workers started together on a new database all create Optuna's tables;
                # the losers find them made a moment later.
                log.debug("storage schema made by another worker meanwhile; opening again")
                time.sleep(0.2 * (attempt + 1))
                continue
            reason = mask_url(text.splitlines()[0] if text else type(error).__name__)
            raise StorageError(f"cannot open storage {mask_url(url)}: {reason}") from None
    if sqlite and not read_only:
        _use_write_ahead_log(storage)
    return storage


# The tables every Optuna RDB study has (optuna/storages/_rdb/models.py).
_OPTUNA_TABLES = {"studies", "trials", "version_info"}


def _check_optuna_sqlite(database: str, url: str) -> None:
    """Refuse an SQLite file that is missing or holds no Optuna study, reading it through a
    read-only connection: opening it as a storage would create Optuna's tables in it."""
    import sqlite3

    path = Path(database)
    if not path.is_file():
        raise StorageError(f"SQLite file {database!r} does not exist; check the --storage URL "
                           "(sqlite:///relative/path or sqlite:////absolute/path)")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro",
                                                uri=True)) as connection:
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as error:
        raise StorageError(f"cannot open storage {mask_url(url)}: {error}") from None
    if not _OPTUNA_TABLES <= tables:
        what = "is empty" if not tables else "holds no Optuna study (its tables are not Optuna's)"
        raise StorageError(f"SQLite file {database!r} {what}; point --storage at a study.db "
                           "that `nas search` wrote")


class _RepairingLock(optuna.storages.journal.JournalFileSymlinkLock):
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


def _use_write_ahead_log(storage: RDBStorage) -> None:
    """Put an SQLite study in WAL mode with ``synchronous=NORMAL``.

    Optuna commits every suggested parameter on its own; in SQLite's default rollback
    journal each commit waits for the disk twice, and readers block writers. In WAL mode a
    trial of the default space records ~10x faster (1.0 s -> 0.1 s per trial of 35
    parameters, measured on this project's 2-core machine), and workers on one machine
    read while another writes. A process killed at any moment still loses nothing
    committed; only a power cut can drop the last commits. Where WAL cannot be used
    (a read-only folder), SQLite's default stays."""
    import sqlite3

    from sqlalchemy import event

    def on_connect(connection, _record) -> None:
        cursor = connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as error:
            log.debug("SQLite stays in its default journal mode: %s", error)
        finally:
            cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # the connection that created the tables predates the hook


def _with_installed_postgres_driver(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1 but psycopg2 to 1.4/2.0; the
    project depends on psycopg2, so plain ``postgresql://`` URLs use whichever is installed."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail and re-queue the running trials whose heartbeat is older than the grace period,
    on any machine. Optuna does this before each trial it starts; this is for the moments
    when no trial is starting. Returns the numbers of the trials failed here."""
    storage = study._storage
    if not is_heartbeat_enabled(storage):
        return []
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        if _fail(study, trial_id):
            failed.append(storage.get_trial(trial_id).number)
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


def _rdb_of(storage: BaseStorage) -> Optional[RDBStorage]:
    """The RDB storage behind ``storage``: itself, or the one a loaded study's cache wraps."""
    from optuna.storages._cached_storage import _CachedStorage

    if isinstance(storage, _CachedStorage):
        storage = storage._backend
    return storage if isinstance(storage, RDBStorage) else None


def trials_without_user_attr(storage: BaseStorage, study_id: int, key: str, *,
                             states: Optional[tuple[TrialState, ...]] = None,
                             after_trial_id: int = -1, trial_ids: frozenset[int] = frozenset()
                             ) -> Optional[list[FrozenTrial]]:
    """The study's trials (in ``states``, if given) that lack the user attribute ``key``, in
    trial order, read by one query on an RDB storage: the other trials are never loaded.
    With ``after_trial_id``, only those with a larger storage id, and those in ``trial_ids``
    whether they have ``key`` or not (the incremental read of Optuna's trial cache, which
    refreshes the unfinished trials it holds). ``None`` for other storages (a journal is
    replayed into memory whole anyway: filter
    :meth:`~optuna.storages.BaseStorage.get_all_trials` there)."""
    storage = _rdb_of(storage)
    if storage is None:
        return None
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import and_, exists, or_
    from sqlalchemy.orm import selectinload

    marked = exists().where(and_(models.TrialUserAttributeModel.trial_id
                                 == models.TrialModel.trial_id,
                                 models.TrialUserAttributeModel.key == key))
    with _create_scoped_session(storage.scoped_session) as session:
        # The eager loads are those of Optuna's own get_all_trials.
        query = (session.query(models.TrialModel)
                 .options(selectinload(models.TrialModel.params),
                          selectinload(models.TrialModel.values),
                          selectinload(models.TrialModel.user_attributes),
                          selectinload(models.TrialModel.system_attributes),
                          selectinload(models.TrialModel.intermediate_values))
                 .filter(models.TrialModel.study_id == study_id))
        if states is not None:
            query = query.filter(models.TrialModel.state.in_(states))
        if after_trial_id > -1:
            query = query.filter(or_(and_(models.TrialModel.trial_id > after_trial_id, ~marked),
                                     models.TrialModel.trial_id.in_(trial_ids)))
        else:
            query = query.filter(~marked)
        return [storage._build_frozen_trial_from_trial_model(model)
                for model in query.order_by(models.TrialModel.trial_id)]


def with_trial_cache(storage: BaseStorage) -> BaseStorage:
    """An RDB ``storage`` behind Optuna's own trial cache, as :func:`optuna.load_study` puts
    it: finished trials are read once, and each later read fetches only the new and the
    unfinished ones, one reader at a time. Other storages are returned as they are."""
    from optuna.storages._cached_storage import _CachedStorage

    return _CachedStorage(storage) if isinstance(storage, RDBStorage) else storage


def count_trials_with_user_attrs(storage: BaseStorage, study_id: int,
                                 keys: tuple[str, ...]) -> Optional[int]:
    """How many of the study's trials carry every user attribute in ``keys``, counted by
    the database of an RDB storage; ``None`` for other storages."""
    storage = _rdb_of(storage)
    if storage is None:
        return None
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import and_, exists, func

    with _create_scoped_session(storage.scoped_session) as session:
        query = session.query(func.count(models.TrialModel.trial_id)).filter(
            models.TrialModel.study_id == study_id,
            *[exists().where(and_(models.TrialUserAttributeModel.trial_id
                                  == models.TrialModel.trial_id,
                                  models.TrialUserAttributeModel.key == key)) for key in keys])
        return int(query.scalar())


# -- the adapter: every use of an Optuna private name outside this module goes through here --


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (Optuna keeps it private)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study``."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of ``trial`` (its ``number`` counts within the study)."""
    return trial._trial_id


def is_requeued_copy(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether ``trial`` is the re-queued copy of a trial whose worker died (:func:`requeue`)."""
    return "failed_trial" in study._storage.get_trial_system_attrs(trial._trial_id)


def study_names(storage: BaseStorage, url: str) -> list[str]:
    """The names of the studies in ``storage`` (opened from ``url``, named in errors)."""
    try:
        return list(optuna.get_all_study_names(storage=storage))
    except Exception as error:  # driver and schema errors have no common base
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        raise StorageError(f"cannot read studies from {mask_url(url)}: {mask_url(reason)}") from None
