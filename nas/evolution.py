"""Regularized (aging) evolution as an Optuna sampler (Real et al., AAAI 2019).

The population is the ``population_size`` most recent complete trials of the study; a
trial's age is its number. Each new trial holds a tournament: ``tournament_size``
members drawn at random without replacement, the best of them is the parent, and the
child is the parent with exactly one choice changed to another of its values. Until the
study has a full population, trials are drawn at random (the paper's random initial
population). The oldest member dies by falling out of the window of recent trials.

Nothing lives in the sampler but its random generator: the population is read from the
study's storage on every trial, so several workers on one storage share one population
and a restarted worker continues it.

One departure from the paper: a child whose parameters some trial of the study already
has (any state: complete, screened, running) is redrawn, with a new tournament, up to
``_NOVEL_ATTEMPTS`` times, because ``nas search`` counts a reused genome against
``--n-trials`` and a duplicate adds no information.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FrozenTrial, TrialState

__all__ = ["RegularizedEvolutionSampler", "POPULATION_SIZE"]

# The default population, and a tournament of all of it (mutate the best of the 10 most
# recent complete trials): of the 17 settings swept on NAS-Bench-201, the lowest mean
# regret over 50 and 100 queries, with exact accuracies and with one noisy training per
# query alike (docs/search_strategy.md).
POPULATION_SIZE = 10
_NOVEL_ATTEMPTS = 50


class RegularizedEvolutionSampler(optuna.samplers.BaseSampler):
    """Aging evolution over the parameters every complete trial shares.

    Parameters outside that shared set (a space whose choices depend on other choices)
    are copied from the parent when it has them with the same distribution, and drawn at
    random otherwise. Single-objective studies only.
    """

    def __init__(self, *, population_size: int = POPULATION_SIZE,
                 tournament_size: Optional[int] = None, seed: Optional[int] = None) -> None:
        """``tournament_size`` None: the whole population."""
        if population_size < 2:
            raise ValueError(f"population_size must be at least 2, got {population_size}")
        if tournament_size is not None and not 1 <= tournament_size <= population_size:
            raise ValueError(f"tournament_size must be in [1, population_size="
                             f"{population_size}], got {tournament_size}")
        self.population_size = population_size
        self.tournament_size = population_size if tournament_size is None else tournament_size
        self._rng = np.random.default_rng(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace()
        # The parent of each trial this process is sampling, for its parameters outside
        # the shared search space; dropped when the trial ends.
        self._parents: dict[int, FrozenTrial] = {}

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._raise_error_if_multi_objective(study)
        return self._search_space.calculate(study)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        population = sorted(complete, key=lambda t: t.number)[-self.population_size:]
        mutable = [name for name, distribution in search_space.items()
                   if not isinstance(distribution, CategoricalDistribution)
                   or len(distribution.choices) > 1]
        if len(population) < self.population_size or not mutable:
            return {}  # the random initial population: every parameter independently
        names = sorted(search_space)
        seen = {tuple(repr(t.params.get(name)) for name in names) for t in trials
                if t.number != trial.number}
        for _ in range(_NOVEL_ATTEMPTS):
            parent = self._tournament(study, population)
            child = {name: parent.params[name] for name in names}
            name = mutable[self._rng.integers(len(mutable))]
            child[name] = self._mutate(study, trial, name, search_space[name], child[name])
            if tuple(repr(child[n]) for n in names) not in seen:
                break
        self._parents[trial.number] = parent
        return child

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        parent = self._parents.get(trial.number)
        if parent is not None and parent.distributions.get(param_name) == param_distribution:
            return parent.params[param_name]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Optional[Sequence[float]]) -> None:
        self._parents.pop(trial.number, None)

    def _tournament(self, study: optuna.Study, population: list[FrozenTrial]) -> FrozenTrial:
        picked = self._rng.choice(len(population), size=self.tournament_size, replace=False)
        contenders = [population[index] for index in sorted(picked)]
        pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        return pick(contenders, key=lambda t: t.value)

    def _mutate(self, study: optuna.Study, trial: FrozenTrial, name: str,
                distribution: BaseDistribution, current: Any) -> Any:
        """Another value of the parameter: a different choice of a categorical, a fresh
        draw of a numeric one."""
        if not isinstance(distribution, CategoricalDistribution):
            return self._random.sample_independent(study, trial, name, distribution)
        index = int(distribution.to_internal_repr(current))
        other = self._rng.integers(len(distribution.choices) - 1)
        return distribution.choices[other + (other >= index)]
