"""The Optuna study a search writes to: its sampler, its pruner, and the identity a
resumed study must keep."""

from __future__ import annotations

import hashlib
from typing import Any

import optuna

from .common import MAX_SEED
from .evolution import RegularizedEvolutionSampler
from .protocol import is_accuracy
from .run import RunFolder
from .search_config import IDENTITY_ATTRS, SearchConfig
from .settings import SettingError
from .storage import StorageError, mask_url, worker_id
from .trial import REFERENCE, name_objectives, objective_names

__all__ = ["make_sampler", "make_pruner", "open_search_study", "SearchedOnly"]


class _SearchedTrials:
    """The study as a sampler sees it: the searched trials alone. A reference network has
    none of the space's parameters, and one such trial empties the intersection search
    space of multivariate TPE and gives evolution a parent without genes."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, *args: Any, **kwargs: Any) -> list:
        return [t for t in self._study.get_trials(*args, **kwargs) if REFERENCE not in t.user_attrs]

    def _get_trials(self, *args: Any, **kwargs: Any) -> list:
        return [t for t in self._study._get_trials(*args, **kwargs)
                if REFERENCE not in t.user_attrs]

    @property
    def trials(self) -> list:
        return self.get_trials()


class SearchedOnly(optuna.samplers.BaseSampler):
    """``sampler``, shown the study without its reference trials (:class:`_SearchedTrials`)."""

    def __init__(self, sampler: optuna.samplers.BaseSampler) -> None:
        self.sampler = sampler

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(_SearchedTrials(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(_SearchedTrials(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(_SearchedTrials(study), trial, param_name,
                                               param_distribution)

    def before_trial(self, study, trial) -> None:
        self.sampler.before_trial(_SearchedTrials(study), trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(_SearchedTrials(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


class _SearchedOnlyPruner(optuna.pruners.BasePruner):
    """``pruner``, shown the study without its reference trials. (Not for Hyperband, which
    Optuna recognises by its class to give the sampler each bracket's trials; it ignores
    trials without epochs anyway.)"""

    def __init__(self, pruner: optuna.pruners.BasePruner) -> None:
        self.pruner = pruner

    def prune(self, study, trial) -> bool:
        return self.pruner.prune(_SearchedTrials(study), trial)


def make_sampler(config: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler ``nas search`` runs for ``config``; public so that benchmarks measure
    exactly this configuration (benchmarks/bench_nasbench201.py)."""
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if config.sampler == "evolution":
        return RegularizedEvolutionSampler(population_size=config.population_size,
                                           tournament_size=config.tournament_size, seed=seed)
    # constant_liar keeps parallel workers from proposing the same genome at once.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=min(10, max(4, config.n_trials // 3)))


def make_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    """Prunes on the per-epoch accuracy an accuracy evaluator reports; Optuna prunes
    single-objective studies only."""
    if config.pruner == "none" or not is_accuracy(config.evaluator) \
            or config.objective == "multi":
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.proxy_epochs)
    # Three finished trials set the bar: a quick search has few, and each pruned one saves
    # two of its three epochs. Searched ones: reference networks report no epochs, and
    # counted in they would start pruning after the first searched trial.
    return _SearchedOnlyPruner(optuna.pruners.MedianPruner(n_startup_trials=3,
                                                           n_warmup_steps=0))


def _existing(name: str, storage: optuna.storages.BaseStorage, url: str):
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
    except Exception as error:  # driver errors while reading
        raise StorageError(f"cannot read study {name!r} from {mask_url(url)}: "
                           f"{mask_url(error)}") from None


def open_search_study(config: SearchConfig, name: str, run: RunFolder,
                      identity: dict[str, Any], attrs: dict[str, Any]) -> optuna.Study:
    """Create study ``name`` in ``run``'s storage, or resume it if ``identity`` matches
    what it was made with (:data:`~nas.search_config.IDENTITY_ATTRS`); a new study records
    ``identity`` and ``attrs``."""
    storage = run.open_storage()
    existing = _existing(name, storage, run.storage_url)
    trials_before = 0
    if existing is not None:
        recorded = existing.user_attrs
        for key in IDENTITY_ATTRS:
            if key in recorded and recorded[key] != identity.get(key):
                raise SettingError("study {name!r} was made with {before}, this run asks "
                                   "{now}; pass another {study} to start a new study",
                                   name=name, before=f"{key}={recorded[key]!r}",
                                   now=f"{key}={identity.get(key)!r}")
        trials_before = len(existing.get_trials(deepcopy=False))
    # A resumed or parallel worker must not replay the sampler's random sequence of the
    # first run, or its proposals would all be duplicates.
    # Kept to 32 bits, as the samplers' seeds must be, however far the study has run.
    seed = (config.seed + 7919 * trials_before) % (MAX_SEED + 1)
    if config.storage:
        seed ^= int(hashlib.sha1(worker_id().encode()).hexdigest()[:8], 16)
    directions = ["maximize", "minimize"] if config.objective == "multi" else ["maximize"]
    try:
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                    directions=directions,
                                    sampler=SearchedOnly(make_sampler(config, seed)),
                                    pruner=make_pruner(config))
    except ValueError as error:
        raise SettingError("study {name!r}: {error}", name=name, error=error) from None
    # Also names those of a study made before objectives had names.
    name_objectives(study, objective_names(config.objective, config.metric))
    if existing is None:
        for key, value in {**identity, **attrs, "storage": mask_url(run.storage_url)}.items():
            study.set_user_attr(key, value)
    return study
