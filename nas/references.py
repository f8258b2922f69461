"""Reference networks in every study: the hand-designed genomes the search must beat.

Each name of ``nas search --references`` (``space.presets``: EfficientNet-B0 and
MnasNet-A1 by default) is evaluated once per study, for the dataset's input channels and
classes as any genome is, and recorded as a reference trial (:func:`nas.trial.mark_reference`:
COMPLETE, outside the trial budget, never the best; every reader shows it beside the best).

The storage decides who evaluates it, as it does the budget: a worker that finds no trial
of a reference queues one carrying the name (:func:`enqueue_references`), and whichever
worker Optuna hands that queued trial runs it (:meth:`nas.objective.Objective.__call__`
sends it to :func:`evaluate_reference`). Two workers that queued the same reference at
the same moment: the lower trial number evaluates it, the other is recorded as screened.
A resumed study finds its references done (or failed on their own: not priceable by a latency
table, say) and queues nothing; one interrupted, or whose worker died, is queued again.

The search's evaluator scores a reference where it can. A supernet scores only genomes of
its own space: a reference outside it is trained at the confirmation's fidelity instead
(:class:`nas.confirm.Confirmer`), and recorded with evaluator ``proxy-train`` so that
neither a reuse nor a proxy-basis comparison mixes the two protocols.

Such a training (two seeds of 15 epochs by default) can take longer than a whole supernet
search, so it must not eat the search's time budget: the search queues the references its
evaluator scores before its first trial and the others after its last
(:func:`scored_directly` splits them), and a reference's training stops at the study's
deadline (``Objective.deadline``). One stopped there is recorded as interrupted, outside
the budget, with the seeds it finished kept; the same command with a longer ``--timeout``
queues it again and goes on from there.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from space import Genome, NasError, presets

from . import trial_notes
from .protocol import EvaluationFailed
from .reward import reward
from .signals import OutOfTime, deadline
from .trial import (FAIL_REASON, REFERENCE, genome_digest, mark_reference,
                    not_evaluated, record_failure, record_genome, record_result)

__all__ = ["enqueue_references", "waiting_references", "evaluate_reference",
           "reference_genome", "scored_directly", "unsettled_references"]

# States of a reference's trial after which nobody queues it again (nor after a failure
# of its own: one that cannot be priced or trained would fail again).
_SETTLED = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


def reference_genome(name: str) -> Genome:
    """The preset ``name``; its classifier and stem follow the dataset when it is built."""
    return presets.get(name)


def _trials_of(trials: Sequence[optuna.trial.FrozenTrial], name: str) -> list:
    return [t for t in trials if t.user_attrs.get(REFERENCE) == name]


def unsettled_references(study: optuna.Study, names: Sequence[str]) -> list[str]:
    """Those of ``names`` the study has not evaluated, is not evaluating or about to, and
    has not failed on its own."""
    trials = study.get_trials(deepcopy=False)
    return [name for name in names
            if not any(t.state in _SETTLED or FAIL_REASON in t.user_attrs
                       for t in _trials_of(trials, name))]


def enqueue_references(study: optuna.Study, names: Sequence[str]) -> list[str]:
    """Queue a trial for each of the :func:`unsettled_references`; returns their names."""
    queued = unsettled_references(study, names)
    for name in queued:
        study.enqueue_trial({}, user_attrs={REFERENCE: name})
    return queued


def waiting_references(study: optuna.Study) -> int:
    """Queued reference trials that no worker has taken yet."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
               if REFERENCE in t.user_attrs)


def _scorable(evaluator: Any, genome: Genome) -> bool:
    """Whether the evaluator can score ``genome``: one bound to a space (a supernet)
    scores only that space's genomes."""
    space = getattr(evaluator, "space", None)
    return space is None or space.contains(genome)


def scored_directly(evaluator: Any, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """``names`` split into those ``evaluator`` scores itself and those it cannot (trained
    at the confirmation's fidelity instead)."""
    direct = [name for name in names if _scorable(evaluator, reference_genome(name))]
    return direct, [name for name in names if name not in direct]


def evaluate_reference(objective: Any, trial: optuna.Trial, name: str):
    """Evaluate reference ``name`` on ``trial`` (queued by :func:`enqueue_references`) for
    ``objective`` (a :class:`nas.objective.Objective`); returns the trial's value(s)."""
    config, study = objective.config, objective.study
    earlier = [t.number for t in _trials_of(study.get_trials(deepcopy=False), name)
               if t.number < trial.number and t.state in (TrialState.COMPLETE, TrialState.RUNNING)]
    if earlier:
        raise not_evaluated(trial, "screened", f"reference network {name} is evaluated by "
                            f"trial {min(earlier)}; not evaluated twice")
    genome = reference_genome(name)
    mark_reference(trial, name)
    costs = objective.pricing.costs(genome)
    try:
        value = objective.pricing.value(genome, costs)
    except NasError as error:  # a latency table timed for another space lacks its blocks
        reason = f"reference network {name} cannot be priced: {error}"
        record_failure(trial, reason)
        raise EvaluationFailed(reason) from None
    direct = _scorable(objective.evaluator, genome)
    record_genome(trial, genome, costs, cost=value,
                  evaluator=config.evaluator if direct else "proxy-train",
                  latency_predicted=value if objective.pricing.latency else None)
    started = time.perf_counter()
    try:
        if direct:
            accuracy = objective.evaluator.evaluate(genome)
            noise = objective.evaluator.noise(accuracy)
        else:
            with deadline(objective.deadline):
                accuracy, noise = _confirmed(objective, genome, trial.number, name)
    except EvaluationFailed as error:
        record_failure(trial, str(error))
        raise
    except OutOfTime:
        raise not_evaluated(trial, "interrupted", f"reference network {name} (which the "
                            f"{config.evaluator} evaluator cannot score) was being trained at "
                            "the confirmation's fidelity when the time budget ran out; the same "
                            "command with a longer --timeout goes on with it") from None
    score = reward(accuracy, value, objective.reward_spec)
    record_result(trial, accuracy=accuracy, reward=score, noise=noise,
                  eval_seconds=time.perf_counter() - started)
    trial_notes.write_trial_note(trial, genome, costs, accuracy=accuracy, reward=score,
                                 resolution=objective.pricing.resolution)
    trial_notes.attach_trial_artifacts(study, trial, genome, objective.artifacts)
    return (accuracy, value) if config.objective == "multi" else score


def _confirmed(objective: Any, genome: Genome, number: int, name: str) -> tuple[float, float]:
    """The reference's mean accuracy and standard error at the confirmation's fidelity
    (recorded as its confirmation entry too, so a confirmation does not train it again)."""
    from .confirm import Confirmer
    from .selection import confirmed_score

    entry = Confirmer(objective.config, objective.study).confirm(
        genome, genome_digest(genome), trial=number, reference=name)
    if entry.get("failed"):
        raise EvaluationFailed(entry["failed"])
    return confirmed_score(entry)

