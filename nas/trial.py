"""What a trial of a search is: the one record the search writes and every reader reads.

The search stores a trial in Optuna as user attributes (the keys below: the genome, its
costs, the evaluator's accuracy and the reward, and why a trial was not evaluated) so
that optuna-dashboard shows them. Readers (the search's summary and ``trials.csv``,
``nas report``, the dashboard's count of screened trials, benchmarks/reproduce.py) read
them through :class:`TrialRecord`, whose :attr:`~TrialRecord.state` is the one
classification of a trial:

- ``complete``: evaluated by this trial (Optuna COMPLETE)
- ``reused``: COMPLETE with the accuracy of an identical genome evaluated before
- ``reference``: a hand-designed reference network recorded beside the search (never
  proposed by the sampler, never counted against the trial budget, never the best)
- ``pruned``: stopped by the pruner after some epochs of training
- ``screened``: not evaluated: its cost fell outside the target window
- ``prescreened``: not evaluated: in the window, but its zero-cost score fell below the bar
- ``over_budget``: not evaluated: other workers had used the trial budget already
- ``interrupted``: stopped by Ctrl-C or SIGTERM during its evaluation; not counted
- ``failed``: its evaluation failed, or its worker died (then re-queued)
- ``running``: being evaluated now
- ``waiting``: queued (a dead worker's re-queued trial)

Screened, prescreened, over-budget and interrupted trials are PRUNED in Optuna; each is
its own state here, never "pruned", which means the pruner's verdict alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from typing import Any, Iterable, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from space import Cost, Genome

from .storage import STALE_ATTR, worker_id

__all__ = ["STATES", "TrialRecord", "classify", "counts_against_budget", "budget_holders",
           "budget_used", "state_counts", "last_trial_of_worker", "mark_reference",
           "objective_names", "name_objectives", "genome_digest", "record_genome", "not_evaluated",
           "record_result", "record_prescreen", "record_failure",
           "GENOME", "REWARD", "ACCURACY", "COST", "SCREENED", "PRESCREEN_SCORE",
           "OVER_BUDGET", "INTERRUPTED", "REUSED_FROM", "FAIL_REASON", "REFERENCE", "WORKER",
           "DIGEST", "EVAL_SECONDS", "COST_KEYS", "LATENCY_PREDICTED", "NOISE"]

# The user attributes of a trial.
GENOME = "genome"  # Genome.to_dict() of the sampled genome
DIGEST = "digest"  # a short hash of the genome's key: identical genomes share it
WORKER = "worker"  # host:pid of the process that ran the trial
COST = "cost"  # the optimised metric's value (multiply-adds, parameters, ... or seconds)
COST_KEYS = ("flops", "params", "activations")  # analytic costs at the deployment resolution
LATENCY_PREDICTED = "latency_predicted"  # metric latency: the table's prediction, seconds
ACCURACY = "accuracy"  # the evaluator's score (validation accuracy or a zero-cost score)
NOISE = "noise"  # the standard error of ACCURACY the evaluator states (absent: unknown)
REWARD = "reward"  # the MnasNet reward of accuracy and cost
EVAL_SECONDS = "eval_seconds"
REUSED_FROM = "reused_from"  # number of the trial whose accuracy this one reused
SCREENED = "screened"  # why the genome was not evaluated (cost window or prescreen)
PRESCREEN_SCORE = "prescreen_score"  # its zero-cost score, when the prescreen ran
OVER_BUDGET = "over_budget"  # True: the budget was used up by other workers
INTERRUPTED = "interrupted"  # why its evaluation was stopped
FAIL_REASON = "fail_reason"  # why its evaluation failed
REFERENCE = "reference"  # name of the hand-designed network this trial records

STATES = ("complete", "reused", "reference", "pruned", "screened", "prescreened",
          "over_budget", "interrupted", "failed", "running", "waiting")
# The reasons a PRUNED trial was not (fully) evaluated, checked in this order.
_NOT_EVALUATED = ((SCREENED, "screened"), (OVER_BUDGET, "over_budget"),
                  (INTERRUPTED, "interrupted"))


def classify(trial: FrozenTrial) -> str:
    """The trial's state, one of :data:`STATES` (see the module docstring)."""
    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        if REFERENCE in attrs:
            return "reference"
        return "reused" if REUSED_FROM in attrs else "complete"
    if trial.state == TrialState.PRUNED:
        kind = next((state for key, state in _NOT_EVALUATED if key in attrs), "pruned")
        if kind == "screened" and PRESCREEN_SCORE in attrs:
            return "prescreened"  # in the window, but its zero-cost score was too low
        return kind
    if trial.state == TrialState.FAIL:
        return "failed"
    return "running" if trial.state == TrialState.RUNNING else "waiting"


def _number(value: Any) -> Optional[float]:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class TrialRecord:
    """One trial as the search recorded it. Built from Optuna's :class:`FrozenTrial` (the
    storage's own form, kept as :attr:`frozen` for Optuna's plots and notes); the genome is
    parsed on first use, since most readers of a large study never look at it."""

    def __init__(self, trial: FrozenTrial) -> None:
        self.frozen = trial
        self.state = classify(trial)

    @property
    def number(self) -> int:
        return self.frozen.number

    @property
    def attrs(self) -> dict[str, Any]:
        return self.frozen.user_attrs

    @property
    def genome_dict(self) -> Optional[dict[str, Any]]:
        value = self.attrs.get(GENOME)
        return value if isinstance(value, dict) else None

    @functools.cached_property
    def genome(self) -> Optional[Genome]:
        """The sampled genome (``None`` for a trial that has none, e.g. a waiting copy)."""
        data = self.genome_dict
        return None if data is None else Genome.from_dict(data)

    @property
    def accuracy(self) -> Optional[float]:
        return _number(self.attrs.get(ACCURACY))

    @property
    def reward(self) -> Optional[float]:
        return _number(self.attrs.get(REWARD))

    @property
    def noise(self) -> Optional[float]:
        """The standard error of :attr:`accuracy` (None: unknown, or a study made before)."""
        return _number(self.attrs.get(NOISE))

    @property
    def cost(self) -> Optional[float]:
        return _number(self.attrs.get(COST))

    def costs(self) -> dict[str, Optional[float]]:
        """``flops``, ``params`` and ``activations`` at the deployment resolution."""
        return {key: _number(self.attrs.get(key)) for key in COST_KEYS}

    @property
    def reused_from(self) -> Optional[int]:
        return self.attrs.get(REUSED_FROM)

    @property
    def evaluated(self) -> bool:
        """A finished evaluation with an accuracy and a cost (reused and reference ones too)."""
        return self.state in ("complete", "reused", "reference") \
            and self.accuracy is not None and self.cost is not None

    @property
    def duration_s(self) -> Optional[float]:
        duration = self.frozen.duration
        return None if duration is None else duration.total_seconds()

    @property
    def note(self) -> str:
        """Why the trial was not evaluated, or failed; ``""`` otherwise."""
        attrs = self.attrs
        if self.state == "over_budget":
            return "budget reached by other workers; not evaluated"
        if self.state == "reference":
            return f"reference network {attrs[REFERENCE]}; outside the search's budget"
        note = attrs.get(SCREENED) or attrs.get(FAIL_REASON) or attrs.get(INTERRUPTED) or ""
        if self.state == "failed" and not note:
            return "worker died; re-queued"
        return note

    def genome_json(self) -> str:
        """The genome as recorded, in compact JSON (``""`` without one)."""
        data = self.genome_dict
        return "" if data is None else json.dumps(data, separators=(",", ":"))


def counts_against_budget(trial: FrozenTrial, retried: set[int]) -> bool:
    """Whether the trial holds a share of the study's ``n_trials``: it evaluated something
    (complete, reused, pruned by the pruner, failed by its own evaluation) or is being
    evaluated. ``retried``: the numbers of the trials whose re-queued copy exists."""
    attrs = trial.user_attrs
    if REFERENCE in attrs:
        return False  # recorded beside the search, not sampled by it
    if trial.state == TrialState.COMPLETE:
        return True
    if trial.state in (TrialState.PRUNED, TrialState.RUNNING):
        # A running trial may already carry its verdict a moment before Optuna prunes it.
        return not {SCREENED, OVER_BUDGET, INTERRUPTED} & attrs.keys()
    if trial.state != TrialState.FAIL:
        return False
    if FAIL_REASON in attrs:
        return True
    # A dead worker's trial holds its share until its copy is queued (or for good, if its
    # genome killed MAX_RETRY workers): Optuna fails it and queues the copy in two steps.
    return STALE_ATTR in trial.system_attrs and trial.number not in retried


def budget_holders(trials: list[FrozenTrial]) -> list[int]:
    """The numbers of the trials that hold a share of ``n_trials``."""
    # "failed_trial" names the first trial of a chain of retries; "retry_history" all of them.
    retried = {number for t in trials for number in t.system_attrs.get("retry_history", ())}
    return [t.number for t in trials if counts_against_budget(t, retried)]


def budget_used(trials: list[FrozenTrial]) -> int:
    """Trials that count against ``n_trials`` (see :func:`counts_against_budget`)."""
    return len(budget_holders(trials))


def state_counts(records: Iterable[TrialRecord]) -> dict[str, int]:
    """How many trials are in each of :data:`STATES` (every state present, 0 if none)."""
    counts = dict.fromkeys(STATES, 0)
    for record in records:
        counts[record.state] += 1
    return counts


def last_trial_of_worker(study: optuna.Study) -> Optional[FrozenTrial]:
    """The last finished trial that this process ran."""
    me = worker_id()
    for trial in reversed(study.get_trials(deepcopy=False)):
        if trial.user_attrs.get(WORKER) == me and trial.state.is_finished():
            return trial
    return None


# -- writing (the search) ----------------------------------------------------------------


def genome_digest(genome: Genome) -> str:
    """The :data:`DIGEST` of ``genome``: identical genomes, and only they, share it."""
    return hashlib.sha1(genome.key().encode()).hexdigest()[:16]


def record_genome(trial: optuna.Trial, genome: Genome, costs: Cost, *, cost: float,
                  evaluator: str, latency_predicted: Optional[float] = None) -> str:
    """Record the sampled genome and its costs on ``trial``; returns its digest."""
    digest = genome_digest(genome)
    attrs = {WORKER: worker_id(), GENOME: genome.to_dict(), DIGEST: digest,
             **{key: getattr(costs, key) for key in COST_KEYS}, COST: cost,
             "evaluator": evaluator}
    if latency_predicted is not None:
        attrs[LATENCY_PREDICTED] = latency_predicted
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return digest


def not_evaluated(trial: optuna.Trial, state: str, reason: str) -> optuna.TrialPruned:
    """Record why ``trial`` is not (fully) evaluated (``state``: "screened", "over_budget"
    or "interrupted"); returns the exception that ends it, for the caller to raise."""
    key = {"screened": SCREENED, "over_budget": OVER_BUDGET, "interrupted": INTERRUPTED}[state]
    trial.set_user_attr(key, True if key == OVER_BUDGET else reason)
    return optuna.TrialPruned(reason)


def record_prescreen(trial: optuna.Trial, score: float) -> None:
    """Record the genome's zero-cost score (the prescreen's median reads every one)."""
    trial.set_user_attr(PRESCREEN_SCORE, score)


def record_failure(trial: optuna.Trial, reason: str) -> None:
    """Record why the evaluation failed: the trial then holds its share of the budget (a
    trial failed without a reason is a dead worker's, re-queued)."""
    trial.set_user_attr(FAIL_REASON, reason)


def record_result(trial: optuna.Trial, *, accuracy: float, reward: float, eval_seconds: float,
                  reused_from: Optional[int] = None, noise: Optional[float] = None) -> None:
    """Record an evaluation: the evaluator's accuracy, the reward and the time it took (the
    accuracy of trial ``reused_from`` when the genome was evaluated before), and the
    standard error of the accuracy where the evaluator states one."""
    if reused_from is not None:
        trial.set_user_attr(REUSED_FROM, reused_from)
    if noise is not None:
        trial.set_user_attr(NOISE, noise)
    trial.set_user_attr(ACCURACY, accuracy)
    trial.set_user_attr(REWARD, reward)
    trial.set_user_attr(EVAL_SECONDS, round(eval_seconds, 3))


def mark_reference(trial: optuna.Trial, name: str) -> None:
    """Record ``trial`` as the evaluation of the hand-designed network ``name`` rather than
    a genome the search proposed: every reader then shows it as a reference, and it holds
    no share of the trial budget. Record its genome and result as for any trial."""
    trial.set_user_attr(REFERENCE, name)


def objective_names(objective: str, metric: str) -> list[str]:
    """What a trial's values are: the reward, or (accuracy, cost in ``metric``) for the
    Pareto search (``objective`` "multi")."""
    return ["accuracy", metric] if objective == "multi" else ["reward"]


def name_objectives(study: optuna.Study, names: list[str]) -> None:
    """Name the study's objectives where optuna-dashboard and Optuna's plots read them
    (instead of "Objective 0"); a study already named is left as it is."""
    if study.metric_names != names:
        with warnings.catch_warnings():
            # set_metric_names is marked experimental since Optuna 3.2; its storage key is
            # the one optuna-dashboard reads.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
