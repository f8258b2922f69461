"""Regularized evolution as an Optuna sampler: one choice mutated per child, the parent
from the tournament over the population of the most recent complete trials, any mix of
categorical choices, and a population that lives in the study's storage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.evolution import RegularizedEvolutionSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {f"x{index}": [0, 1, 2, 3] for index in range(5)}


def _noise(params: dict) -> float:
    """A fixed pseudo-random value per parameter set, in [0, 1)."""
    digest = hashlib.sha256(repr(sorted(params.items())).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def _objective(trial: optuna.Trial) -> float:
    params = {name: trial.suggest_categorical(name, choices) for name, choices in SPACE.items()}
    if params["x0"] == 3 and params["x1"] == 3:
        raise optuna.TrialPruned()  # never a member of the population
    # Later trials score lower, so the best of a window of recent trials is not the best
    # of the study: a population larger than asked would show in the parents.
    return _noise(params) - 0.05 * trial.number


def _distance(a: dict, b: dict) -> int:
    return sum(a[name] != b[name] for name in a)


def _window(trials: list, before: int, size: int) -> list:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.number < before]
    return complete[-size:]


def test_child_is_the_tournament_winner_with_one_choice_changed() -> None:
    population = 6
    # A tournament of the whole population is deterministic: its best member.
    sampler = RegularizedEvolutionSampler(population_size=population,
                                          tournament_size=population, seed=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=60)
    trials = study.trials
    assert any(t.state == TrialState.PRUNED for t in trials)
    evolved = [t for t in trials if len(_window(trials, t.number, population)) == population]
    assert len(evolved) > 40
    for trial in evolved:
        best = max(_window(trials, trial.number, population), key=lambda t: t.value)
        assert _distance(trial.params, best.params) == 1, trial.number
    novel = [t for t in evolved if all(t.params != other.params
                                       for other in trials[:t.number])]
    assert novel == evolved  # 1,024 cells: a child that exists already is redrawn


def test_tournament_draws_its_parent_from_the_population_only() -> None:
    population = 5
    sampler = RegularizedEvolutionSampler(population_size=population, tournament_size=2,
                                          seed=2)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=50)
    trials = study.trials
    for trial in trials:
        members = _window(trials, trial.number, population)
        if len(members) == population:
            # The worst member never wins a tournament of two distinct members.
            worst = min(members, key=lambda t: t.value)
            assert any(_distance(trial.params, m.params) == 1 for m in members if m is not worst)


def test_mixed_categorical_choices() -> None:
    space = {"activation": ["relu", None, 3, 0.25, True],
             "kernel": [3, 5, 7],
             "fixed": ["only"],  # one choice: nothing to mutate
             "ratio": [0.0, 0.5]}

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_categorical(name, choices)
                  for name, choices in space.items()}
        return _noise(params)

    sampler = RegularizedEvolutionSampler(population_size=4, tournament_size=2, seed=3)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(objective, n_trials=40)
    trials = study.trials
    seen = {name: set() for name in space}
    for trial in trials:
        for name, value in trial.params.items():
            assert any(value == c and type(value) is type(c) for c in space[name]), (name, value)
            seen[name].add(repr(value))
        members = _window(trials, trial.number, 4)
        if len(members) == 4:
            assert any(_distance(trial.params, m.params) == 1 for m in members), trial.number
    assert seen["activation"] == {repr(c) for c in space["activation"]}
    assert seen["fixed"] == {"'only'"}


def test_resumes_and_shares_the_population_in_storage(tmp_path: Path) -> None:
    population = 6

    def storage() -> optuna.storages.BaseStorage:
        """A fresh reader of the journal file, as a new process opens it (nas search
        --storage journal:PATH)."""
        path = str(tmp_path / "study.journal")
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))

    def sampler(seed: int) -> RegularizedEvolutionSampler:
        return RegularizedEvolutionSampler(population_size=population,
                                           tournament_size=population, seed=seed)

    first = optuna.create_study(study_name="s", storage=storage(), direction="maximize",
                                sampler=sampler(0))
    first.optimize(_objective, n_trials=12)
    stored = first.trials
    # A restarted worker and a second one, each with a sampler that has seen nothing:
    # their first trials are children of the stored population, not a new random one.
    workers = [optuna.load_study(study_name="s", storage=storage(), sampler=sampler(seed))
               for seed in (10, 11)]
    for step in range(4):
        workers[step % 2].optimize(_objective, n_trials=1)
    trials = workers[0].trials
    assert trials[:12] == stored
    for trial in trials[12:]:
        best = max(_window(trials, trial.number, population), key=lambda t: t.value)
        assert _distance(trial.params, best.params) == 1, trial.number


@pytest.mark.parametrize("population, tournament", [(1, 1), (4, 5), (4, 0)])
def test_out_of_range_sizes_are_refused(population: int, tournament: int) -> None:
    with pytest.raises(ValueError, match="_size"):
        RegularizedEvolutionSampler(population_size=population, tournament_size=tournament)


def test_nas_search_evolves_the_genomes_of_its_window_and_resumes(tmp_path: Path) -> None:
    from nas.cli import main

    population = 2
    journal = tmp_path / "study.journal"
    command = ["search", "--target-flops", "400M", "--runs", str(tmp_path), "--study", "e",
               "--storage", f"journal:{journal}", "--evaluator", "naswot",
               "--proxy-subset", "64", "--quiet", "--references", "none",
               "--sampler", "evolution", "--population-size", str(population)]

    def trials() -> list:
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal)))
        return optuna.load_study(study_name="e", storage=storage).trials

    assert main([*command, "--n-trials", "3"]) == 0
    first_run = len(trials())
    assert main([*command, "--n-trials", "5"]) == 0  # another search: the stored population
    trials = trials()
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 5
    # Genomes outside the cost window are screened trials, never members: the window of
    # complete trials fills later than the trial count says.
    assert any("screened" in t.user_attrs for t in trials[:first_run])
    resumed = trials[first_run:]
    assert resumed and all(len(_window(trials, t.number, population)) == population
                           for t in resumed)
    for trial in resumed:
        members = _window(trials, trial.number, population)
        assert any(_distance(trial.params, m.params) == 1 for m in members), trial.number
