"""A study as its readers show it: the trials that were evaluated, and a count of the rest.

Most trials of a search with a cost window are *screened* (9,270 of the 10,000 of issue
26's study): genomes the search recorded without evaluating them, because their cost fell
outside the target window or their zero-cost score below the prescreen's bar (user
attribute ``screened``; a prescreened one also has a ``prescreen_score``). They stay in the
study: the sampler learns from them where not to look, the prescreen's median and the
budget read them, and workers on other machines share them through the storage. But a page
that lists every trial spends most of its time and memory on genomes nobody trained (that
study's dashboard request returned 127 MB). The dashboard and the report read
:func:`evaluated_trials` and :func:`count_screened` instead; ``trials.csv`` keeps every
trial.

On an RDB storage the screened trials are never loaded (one query leaves them out, another
counts them); a journal storage holds the whole study in memory anyway and is filtered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from .storage import count_trials_with_user_attrs, trials_without_user_attr, with_trial_cache

__all__ = ["SCREENED", "PRESCREEN_SCORE", "ScreenedCount", "evaluated_trials",
           "count_screened", "hide_screened"]

SCREENED = "screened"  # user attribute: why the genome was not evaluated
PRESCREEN_SCORE = "prescreen_score"  # user attribute: its zero-cost score, when it had one


@dataclass(frozen=True)
class ScreenedCount:
    """Screened trials of a study: ``window`` fell outside the cost window, ``prescreened``
    were in it but scored below the prescreen's bar."""

    window: int
    prescreened: int

    @property
    def total(self) -> int:
        return self.window + self.prescreened


def evaluated_trials(study: optuna.Study, *,
                     states: Optional[tuple[TrialState, ...]] = None) -> list[FrozenTrial]:
    """The study's trials but the screened ones, in trial order (all that were evaluated
    or are being evaluated, pruned, failed and waiting ones included)."""
    storage = study._storage
    trials = trials_without_user_attr(storage, study._study_id, SCREENED, states=states)
    if trials is None:
        trials = [t for t in storage.get_all_trials(study._study_id, deepcopy=False, states=states)
                  if SCREENED not in t.user_attrs]
    return trials


def count_screened(study: optuna.Study) -> ScreenedCount:
    """How many trials the search screened, without reading them on an RDB storage."""
    storage, study_id = study._storage, study._study_id
    screened = count_trials_with_user_attrs(storage, study_id, (SCREENED,))
    if screened is None:
        marked = [t for t in storage.get_all_trials(study_id, deepcopy=False)
                  if SCREENED in t.user_attrs]
        prescreened = sum(PRESCREEN_SCORE in t.user_attrs for t in marked)
        return ScreenedCount(window=len(marked) - prescreened, prescreened=prescreened)
    prescreened = count_trials_with_user_attrs(storage, study_id, (SCREENED, PRESCREEN_SCORE))
    return ScreenedCount(window=screened - prescreened, prescreened=prescreened)


def hide_screened(storage: BaseStorage) -> BaseStorage:
    """A view of ``storage`` whose ``get_all_trials`` leaves out screened trials, for
    optuna-dashboard: it reads every trial of a study through that method (its trial list,
    plots and incremental ``?after=`` refreshes, and the importances it computes on an
    ``optuna.Study`` of the view) and serialises each with its 35 parameter distributions.

    An RDB storage is read through Optuna's trial cache (:func:`with_trial_cache`), filled
    by one query that leaves screened trials out: the dashboard's refresh every few seconds
    then reads only new trials, and its concurrent requests read the study once. Hand over
    a storage opened for the dashboard alone: this changes the object itself."""
    if isinstance(storage, RDBStorage):
        rdb = storage

        def _get_trials(study_id: int, states, included_trial_ids: set[int],
                        trial_id_greater_than: int) -> list[FrozenTrial]:
            # The cache refreshes its unfinished trials by id: those screened since are
            # read too, and left out below.
            return trials_without_user_attr(
                rdb, study_id, SCREENED, states=states, after_trial_id=trial_id_greater_than,
                trial_ids=frozenset(included_trial_ids))

        rdb._get_trials = _get_trials  # what the cache reads through
        storage = with_trial_cache(rdb)
    read_all = storage.get_all_trials

    def get_all_trials(study_id: int, deepcopy: bool = True,
                       states: Optional[tuple[TrialState, ...]] = None) -> list[FrozenTrial]:
        return [t for t in read_all(study_id, deepcopy=deepcopy, states=states)
                if SCREENED not in t.user_attrs]

    storage.get_all_trials = get_all_trials  # this instance only
    return storage
