"""One trial of the search, and what it is worth.

A trial samples a genome, prices it analytically at the *deployment* resolution (the
reward's multiply-adds), screens it against the target window without training, lets a
zero-cost prescreen reject it, claims its share of the study's trial budget, then reuses
the result of an identical genome evaluated before or evaluates it (proxy training at the
*proxy* resolution, pruned on its per-epoch accuracy, or a zero-cost proxy), and records
everything on the trial (:mod:`nas.trial`), the score's standard error included, where
optuna-dashboard shows it. A queued trial that names a reference network evaluates that
network instead (:mod:`nas.references`).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable, Optional

import optuna
from optuna.trial import FrozenTrial

from space import Cost, Genome, SearchSpace, cost

from . import trial_notes
from .common import format_count
from .protocol import EvaluationFailed
from .reward import RewardSpec, reward
from .search_config import SearchConfig
from .settings import SettingError
from .signals import StopRequested
from .storage import is_requeued_copy
from .references import evaluate_reference
from .trial import (NOISE, REFERENCE, TrialRecord, budget_holders, not_evaluated,
                    record_failure, record_genome, record_prescreen, record_result)

__all__ = ["Pricing", "Objective", "check_space_fits"]


class Pricing:
    """What a genome costs the search: its analytic costs at the deployment resolution
    for the dataset's shape, and the value of the metric the reward weighs (for latency,
    the latency table's prediction)."""

    def __init__(self, metric: str, resolution: int, num_classes: int, in_channels: int,
                 latency: Any = None) -> None:
        self.metric, self.resolution = metric, resolution
        self.num_classes, self.in_channels = num_classes, in_channels
        self.latency = latency  # nas.latency.use.SearchLatency, for metric "latency"

    def costs(self, genome: Genome) -> Cost:
        return cost(genome, self.resolution, self.num_classes, self.in_channels)

    def value(self, genome: Genome, costs: Optional[Cost] = None) -> float:
        if self.latency is not None:
            return self.latency.predict(genome)
        return getattr(costs or self.costs(genome), self.metric)


def check_space_fits(space: SearchSpace, config: SearchConfig, pricing: Pricing) -> None:
    """Refuse a target that no genome of the space can reach within the cost window."""
    if config.metric == "latency" or config.objective == "multi":
        return
    lowest, highest = pricing.value(space.smallest()), pricing.value(space.largest())
    window_low = config.target * (1 - config.cost_window)
    window_high = config.target * (1 + config.cost_window) if config.cost_window else math.inf
    if lowest > window_high:
        raise SettingError("every genome of the space exceeds the target: the smallest has "
                           "{low} {metric}, above {high}; raise {target} or shrink the space",
                           low=format_count(lowest), metric=config.metric,
                           high=format_count(window_high))
    if config.cost_window and highest < window_low:
        raise SettingError("every genome of the space is below the target window: the "
                           "largest has {high} {metric}, below {low}; lower the target or "
                           "use {cost_window} 0", high=format_count(highest),
                           metric=config.metric, low=format_count(window_low))


class Objective:
    """The function Optuna calls for each trial of one worker; it also remembers, from
    the study, what earlier trials found (:meth:`learn`)."""

    def __init__(self, config: SearchConfig, *, space: SearchSpace, pricing: Pricing,
                 evaluator: Any, prescreen: Any, study: optuna.Study, artifacts: Any,
                 study_name: str) -> None:
        self.config, self.space, self.pricing = config, space, pricing
        self.evaluator, self.prescreen = evaluator, prescreen
        self.study, self.artifacts, self.study_name = study, artifacts, study_name
        self.reward_spec = RewardSpec(config.target, config.alpha, config.beta)
        # time.monotonic() at which the study's time budget ends (None: no time budget);
        # the search sets it, and the work it does not stop between trials stops there.
        self.deadline: Optional[float] = None
        self.digests: dict[str, FrozenTrial] = {}  # digest -> the trial that evaluated it
        self.prescreened: dict[str, FrozenTrial] = {}  # digest -> a trial the prescreen rejected
        self.best_reward = -math.inf

    def learn(self, trials: list[FrozenTrial]) -> None:
        """Take note of the genomes evaluated or rejected so far, and the best reward of
        the searched ones. A reference network scored by this search's evaluator is
        reused like any genome; one trained at another fidelity is not."""
        for trial in trials:
            record = TrialRecord(trial)
            digest = record.attrs.get("digest")
            if digest is not None and (record.state == "complete" or (
                    record.state == "reference"
                    and record.attrs.get("evaluator") == self.config.evaluator)):
                self.digests.setdefault(digest, trial)
            if record.state == "prescreened" and digest is not None:
                self.prescreened.setdefault(digest, trial)
            if record.state in ("complete", "reused") and record.reward is not None:
                self.best_reward = max(self.best_reward, record.reward)

    def __call__(self, trial: optuna.Trial):
        """The objective; a stop request during it prunes the trial as interrupted (it then
        holds no share of the budget, and Optuna logs no traceback for a pruned trial)."""
        try:
            name = trial.user_attrs.get(REFERENCE)  # a queued reference network
            if name is not None:
                return evaluate_reference(self, trial, name)
            return self._evaluate(trial)
        except StopRequested as stop:
            raise not_evaluated(trial, "interrupted", f"interrupted by {stop} during its "
                                "evaluation; not counted") from None

    def _evaluate(self, trial: optuna.Trial):
        config = self.config
        genome = self.space.sample(trial, name=f"{self.study_name}-trial{trial.number}")
        costs = self.pricing.costs(genome)
        value = self.pricing.value(genome, costs)
        digest = record_genome(trial, genome, costs, cost=value, evaluator=config.evaluator,
                               latency_predicted=value if self.pricing.latency else None)
        self._screen(trial, value)
        previous = self.digests.get(digest)
        if previous is None and self.prescreen is not None:
            self._prescreen(trial, genome, digest)
        self._claim_budget(trial)
        started = time.perf_counter()
        if previous is not None:
            accuracy, noise = previous.user_attrs["accuracy"], previous.user_attrs.get(NOISE)
        else:
            try:
                accuracy = self.evaluator.evaluate(genome, on_epoch=self._pruning_callback(trial))
            except EvaluationFailed as error:
                record_failure(trial, str(error))
                raise
            noise = self.evaluator.noise(accuracy)
        score = reward(accuracy, value, self.reward_spec)
        record_result(trial, accuracy=accuracy, reward=score,
                      eval_seconds=time.perf_counter() - started,
                      reused_from=None if previous is None else previous.number, noise=noise)
        trial_notes.write_trial_note(trial, genome, costs, accuracy=accuracy, reward=score,
                                     resolution=self.pricing.resolution)
        trial_notes.attach_trial_artifacts(self.study, trial, genome, self.artifacts)
        return (accuracy, value) if config.objective == "multi" else score

    def _screen(self, trial: optuna.Trial, value: float) -> None:
        """Evaluate only a genome whose cost lies in the target window."""
        config = self.config
        if config.objective != "single" or not config.cost_window:
            return
        low = config.target * (1 - config.cost_window)
        high = config.target * (1 + config.cost_window)
        if not low <= value <= high:
            raise not_evaluated(trial, "screened", f"{config.metric} {format_count(value)} "
                                f"outside the target window {format_count(low)}.."
                                f"{format_count(high)}; not evaluated")

    def _prescreen(self, trial: optuna.Trial, genome: Genome, digest: str) -> None:
        """Train only a genome whose zero-cost score reaches the median of the window's
        earlier candidates: the score ranks genomes better than a short training does, and
        costs a fraction of a second where a proxy training costs minutes."""
        if is_requeued_copy(self.study, trial):
            return  # the retry of a trial whose worker died: it was judged worth training
        rejected = self.prescreened.get(digest)
        if rejected is not None:
            # Rejected before, also in an earlier run: the verdict stands, without a second
            # zero-cost evaluation.
            record_prescreen(trial, rejected.user_attrs["prescreen_score"])
            raise not_evaluated(trial, "screened", f"the same genome as trial "
                                f"{rejected.number}, which the prescreen did not train")
        try:
            score = self.prescreen.evaluate(genome)
        except EvaluationFailed:
            return  # no zero-cost opinion; training decides
        record_prescreen(trial, score)
        earlier = [t.user_attrs["prescreen_score"]
                   for t in self.study.get_trials(deepcopy=False)
                   if "prescreen_score" in t.user_attrs and t.number != trial.number]
        bar = statistics.median(earlier) if earlier else -math.inf
        if score < bar:
            raise not_evaluated(trial, "screened", f"{self.prescreen.name} score {score:.4g} "
                                f"below the median {bar:.4g} of the {len(earlier)} earlier "
                                "candidates in the window; not trained")

    def _claim_budget(self, trial: optuna.Trial) -> None:
        """Evaluate only if this trial is among the first ``n_trials`` that count.

        Workers check the budget before asking for a trial, but several can pass that check
        at once; trial numbers are handed out atomically by the storage, so letting the
        lower numbers win makes the total exact without a lock."""
        counted = sorted({*budget_holders(self.study.get_trials(deepcopy=False)),
                          trial.number})
        if trial.number not in counted[: self.config.n_trials]:
            raise not_evaluated(trial, "over_budget",
                                "the study's trial budget was reached by other workers")

    def _pruning_callback(self, trial: optuna.Trial) -> Optional[Callable[[int, float], None]]:
        if self.config.objective == "multi":
            return None  # Optuna prunes single-objective studies only

        def on_epoch(epoch: int, val_accuracy: float) -> None:
            trial.report(val_accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation accuracy {val_accuracy:.4f} at epoch "
                                         f"{epoch} below the pruner's bar")

        return on_epoch
