"""Everything outside this package needs of Optuna's private names, behind public functions:
a study's storage and ids, a re-queued trial's mark, and reads of an RDB storage that skip
the trials nobody needs (:mod:`nas.study_view`). An Optuna upgrade that renames them
breaks this file alone."""

from __future__ import annotations

from typing import Optional

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from ..redact import mask_url
from .base import StorageError

__all__ = ["storage_of", "study_id", "trial_id", "study_system_attrs", "stale_trial_ids",
           "is_requeued_copy", "study_names",
           "trials_without_user_attr", "with_trial_cache", "count_trials_with_user_attrs",
           "without_trials_marked"]


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


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (Optuna keeps it private)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study``."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of ``trial`` (its ``number`` counts within the study)."""
    return trial._trial_id


def study_system_attrs(study: optuna.Study) -> dict:
    """The study's system attributes (where optuna-dashboard keeps trial notes)."""
    return study._storage.get_study_system_attrs(study._study_id)


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """The storage ids of the running trials whose heartbeat is older than the grace
    period, marked stale on the way (:class:`nas.storage.HeartbeatRDBStorage`); ``[]`` for
    a storage without a heartbeat."""
    storage = study._storage
    if not is_heartbeat_enabled(storage):
        return []
    return storage._get_stale_trial_ids(study._study_id)


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


def without_trials_marked(storage: BaseStorage, key: str) -> BaseStorage:
    """``storage`` changed so that its ``get_all_trials`` leaves out the trials carrying
    the user attribute ``key`` (for a reader that lists trials, such as optuna-dashboard).

    An RDB storage is read through Optuna's trial cache (:func:`with_trial_cache`), filled
    by one query that leaves those trials out: a reader refreshing every few seconds then
    reads only new trials, and its concurrent requests read the study once. Hand over a
    storage opened for that reader alone: this changes the object itself."""
    if isinstance(storage, RDBStorage):
        rdb = storage

        def _get_trials(study_id: int, states, included_trial_ids: set[int],
                        trial_id_greater_than: int) -> list[FrozenTrial]:
            # The cache refreshes its unfinished trials by id: those marked since are
            # read too, and left out below.
            return trials_without_user_attr(
                rdb, study_id, key, states=states, after_trial_id=trial_id_greater_than,
                trial_ids=frozenset(included_trial_ids))

        rdb._get_trials = _get_trials  # what the cache reads through
        storage = with_trial_cache(rdb)
    read_all = storage.get_all_trials

    def get_all_trials(study_id: int, deepcopy: bool = True,
                       states: Optional[tuple[TrialState, ...]] = None) -> list[FrozenTrial]:
        return [t for t in read_all(study_id, deepcopy=deepcopy, states=states)
                if key not in t.user_attrs]

    storage.get_all_trials = get_all_trials  # this instance only
    return storage
