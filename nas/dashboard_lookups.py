"""optuna-dashboard's per-trial lookups, made linear in the number of trials.

optuna-dashboard keeps each trial's note (and artifacts uploaded through its page) in the
*study's* system attributes, under keys that name the trial (``dashboard:<trial id>:note_str:0``,
``dashboard:artifacts:<trial id>:...``). To serialise a trial it scans every study attribute
for that trial's prefix, so a study request costs trials x attributes: with the search's note
on each of 730 evaluated trials, 1.6 million prefix tests and half the request's time; with
7,300, a hundred times that. :func:`index_trial_lookups` hands the serialiser of each trial
the attributes of that trial alone, grouped once per request; what it reads, and so what
the page shows, is unchanged.

It replaces ``optuna_dashboard._serializer.serialize_frozen_trial`` (so named in 0.21);
with another version of optuna-dashboard that lacks it, nothing is replaced and the
dashboard works as before, only slower on large studies.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import defaultdict
from typing import Any, Callable

from .storage import trial_id

__all__ = ["index_trial_lookups"]

log = logging.getLogger(__name__)

# Keys of one trial in the study's system attributes: its note (dashboard:<id>:note_ver,
# dashboard:<id>:note_str:<n>) and artifacts uploaded in the page (dashboard:artifacts:<id>:...).
_TRIAL_KEY = re.compile(r"dashboard:(?:artifacts:)?(\d+):")
_lock = threading.Lock()


def _by_trial(study_system_attrs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    grouped: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in study_system_attrs.items():
        match = _TRIAL_KEY.match(key)
        if match:
            grouped[int(match.group(1))][key] = value
    return grouped


def _indexed(serialize: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    # The study request passes one attribute dict to every trial of the study; the last
    # grouping is kept, keyed by that dict's identity (the dict itself is held, so the
    # identity cannot be reused by another). One tuple, read and replaced whole, so that
    # concurrent requests never pair one dict with another's grouping.
    last: list[tuple[Any, dict[int, dict[str, Any]]]] = [(None, {})]

    @functools.wraps(serialize)  # __wrapped__: the original
    def serialize_frozen_trial(study_id: int, trial, study_system_attrs: dict[str, Any]):
        attrs, grouped = last[0]
        if attrs is not study_system_attrs:
            grouped = _by_trial(study_system_attrs)
            last[0] = (study_system_attrs, grouped)
        return serialize(study_id, trial, grouped.get(trial_id(trial), {}))

    serialize_frozen_trial.nas_indexed = True
    return serialize_frozen_trial


def index_trial_lookups() -> bool:
    """Make optuna-dashboard look up each trial's note and artifacts by trial (once per
    process); False where this version of optuna-dashboard offers no place to do it."""
    from optuna_dashboard import _serializer

    with _lock:
        current = getattr(_serializer, "serialize_frozen_trial", None)
        if current is None:
            log.debug("optuna-dashboard has no serialize_frozen_trial; trial lookups unchanged")
            return False
        if not getattr(current, "nas_indexed", False):
            _serializer.serialize_frozen_trial = _indexed(current)
    return True
