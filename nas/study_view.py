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
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from .storage import (count_trials_with_user_attrs, storage_of, study_id, trials_without_user_attr,
                      without_trials_marked)
from .trial import PRESCREEN_SCORE, SCREENED, TrialRecord

__all__ = ["SCREENED", "PRESCREEN_SCORE", "ScreenedCount", "evaluated_trials",
           "count_screened", "hide_screened"]


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
    storage, ident = storage_of(study), study_id(study)
    trials = trials_without_user_attr(storage, ident, SCREENED, states=states)
    if trials is None:
        trials = [t for t in storage.get_all_trials(ident, deepcopy=False, states=states)
                  if SCREENED not in t.user_attrs]
    return trials


def count_screened(study: optuna.Study) -> ScreenedCount:
    """How many trials the search screened, without reading them on an RDB storage."""
    storage, ident = storage_of(study), study_id(study)
    screened = count_trials_with_user_attrs(storage, ident, (SCREENED,))
    if screened is None:
        marked = [TrialRecord(t) for t in storage.get_all_trials(ident, deepcopy=False)
                  if SCREENED in t.user_attrs]
        prescreened = sum(r.state == "prescreened" for r in marked)
        return ScreenedCount(window=len(marked) - prescreened, prescreened=prescreened)
    prescreened = count_trials_with_user_attrs(storage, ident, (SCREENED, PRESCREEN_SCORE))
    return ScreenedCount(window=screened - prescreened, prescreened=prescreened)


def hide_screened(storage: BaseStorage) -> BaseStorage:
    """A view of ``storage`` whose ``get_all_trials`` leaves out screened trials, for
    optuna-dashboard: it reads every trial of a study through that method (its trial list,
    plots and incremental ``?after=`` refreshes, and the importances it computes on an
    ``optuna.Study`` of the view) and serialises each with its 35 parameter distributions.
    An RDB storage never loads them (:func:`nas.storage.without_trials_marked`). Hand over
    a storage opened for the dashboard alone: this changes the object itself."""
    return without_trials_marked(storage, SCREENED)
