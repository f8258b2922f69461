"""A small real study, shaped like the ones `nas search` leaves in runs/<study>/.

The genomes are sampled by the real search space through Optuna's TPE sampler and costed by
``space.cost``; the attributes, states and notes are those the search records. Only the
accuracy is synthetic (no network is trained): it grows with the logarithm of the
multiply-adds, with seeded noise, so the plots have a trend and a Pareto front to show.
"""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import optuna
from optuna.trial import TrialState
from optuna_dashboard import save_note

from nas import trial_notes
from nas.common import atomic_write_json
from nas.reward import RewardSpec, reward
from space import Genome, SearchSpace, cost

TARGET = 350_000_000
MBCONV_SPACE = Path(__file__).resolve().parents[2] / "space" / "mbconv_space.toml"
RESOLUTION, NUM_CLASSES, IN_CHANNELS = 224, 10, 1
EPOCHS = 3


def _unsynced_sqlite(path: Path) -> optuna.storages.RDBStorage:
    """The study's real SQLite file, written without fsync: a trial makes about twenty
    commits, and on a busy disk synced commits turn a second of set-up into half a minute.
    Readers (the dashboard, the report) open the file normally afterwards."""

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=60)
        connection.execute("PRAGMA synchronous=OFF")
        return connection

    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"creator": connect})


def make_study(run_dir: Path, *, name: str = "demo", n_trials: int = 16, seed: int = 0,
               objective: str = "single") -> optuna.Study:
    """Fill ``run_dir/study.db`` (and ``run_dir/artifacts``, ``best.json``) with a study."""
    run_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the synthetic failure is expected
    directions = ["maximize", "minimize"] if objective == "multi" else ["maximize"]
    study = optuna.create_study(study_name=name, storage=_unsynced_sqlite(run_dir / "study.db"),
                                directions=directions,
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=8))
    attrs = {"target": TARGET, "target_flops": TARGET, "metric": "flops", "alpha": -0.07,
             "beta": -0.07, "objective": objective, "dataset": "fashion-mnist",
             "evaluator": "proxy-train", "resolution": RESOLUTION, "proxy_resolution": 32,
             "num_classes": NUM_CLASSES, "in_channels": IN_CHANNELS}
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    # The MBConv-only space the default was before issue 20: the seeded TPE draws the same
    # genomes, with a few inside the window whatever the trial count.
    space = SearchSpace.from_file(MBCONV_SPACE)
    store = trial_notes.artifact_store_for(run_dir)
    spec = RewardSpec(TARGET, -0.07, -0.07)
    rng = random.Random(seed)
    seen: dict[str, int] = {}

    def objective_fn(trial: optuna.Trial):
        genome = space.sample(trial, name=f"{name}-trial{trial.number}")
        costs = cost(genome, RESOLUTION, NUM_CLASSES, IN_CHANNELS)
        for key, value in {"genome": genome.to_dict(), "flops": costs.flops,
                           "params": costs.params, "activations": costs.activations,
                           "cost": costs.flops, "evaluator": "proxy-train"}.items():
            trial.set_user_attr(key, value)
        if not 0.6 * TARGET <= costs.flops <= 1.4 * TARGET:
            trial.set_user_attr("screened", "multiply-adds outside the target window; not evaluated")
            raise optuna.TrialPruned()
        if trial.number == 5:
            trial.set_user_attr("fail_reason", "out of memory (synthetic)")
            raise RuntimeError("synthetic evaluation failure")
        accuracy = min(0.95, 0.85 + 0.04 * math.log(costs.flops / TARGET) + rng.uniform(-0.01, 0.01))
        if genome.key() in seen:
            trial.set_user_attr("reused_from", seen[genome.key()])
        seen.setdefault(genome.key(), trial.number)
        for epoch in range(EPOCHS if objective == "single" else 0):  # Optuna: single only
            trial.report(accuracy * (0.7 + 0.3 * (epoch + 1) / EPOCHS), epoch)
        score = reward(accuracy, costs.flops, spec)
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("reward", score)
        trial.set_user_attr("eval_seconds", round(rng.uniform(1, 5), 3))
        save_note(trial, trial_notes.trial_note(genome, costs, accuracy=accuracy, reward=score,
                                              resolution=RESOLUTION))
        trial_notes.attach_trial_artifacts(study, trial, genome, store)
        return (accuracy, costs.flops) if objective == "multi" else score

    study.optimize(objective_fn, n_trials=n_trials, catch=(RuntimeError,))
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if complete:
        best = max(complete, key=lambda t: t.user_attrs["reward"])
        atomic_write_json(run_dir / "best.json", Genome.from_dict(best.user_attrs["genome"]).to_dict())
    return study
