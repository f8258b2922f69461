"""The search: Optuna trials over a :class:`~space.SearchSpace`, scored by the MnasNet reward.

One trial: sample a genome, cost it analytically at the *deployment* resolution (the
reward's multiply-adds), screen it against the target window without training, reuse the
result of an identical genome evaluated before, otherwise evaluate it (proxy training at
the *proxy* resolution, or a zero-cost proxy) and record everything on the trial where
optuna-dashboard shows it.

``n_trials`` is the study's total budget, shared by every worker on the same storage: the
trials that evaluated something (complete, pruned by the pruner, failed by their own
evaluation) plus those running now. Screened trials do not count. A dead worker's trial
is failed and re-queued; its share of the budget passes to the queued copy, which some
worker then runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from space import Genome, SearchSpace, SpaceError, cost

from . import trial_notes
from .common import MAX_SEED, UsageError, die_with_parent, format_count
from .evolution import POPULATION_SIZE, RegularizedEvolutionSampler
from .outputs import passing_machine_faults
from .protocol import EVALUATORS, PRESCREENS, PROXY_DEFAULTS, EvaluationFailed
from .results import SearchResult, write_outputs
from .reward import RewardSpec, reward
from .run import RunFolder
from .signals import StopRequested, check_stop, handle_signals, quiet_stops_in, stopped
from .storage import (StorageError, fail_dead_local_workers, is_requeued_copy, mask_url,
                      wait_for_running_trials, worker_id)
from .trial import (budget_holders, budget_used, last_trial_of_worker, name_objectives,
                    objective_names)

__all__ = ["SearchConfig", "SearchResult", "run_search", "METRICS", "SAMPLERS", "PRUNERS",
           "default_study_name", "budget_used", "write_outputs", "make_sampler"]

log = logging.getLogger(__name__)

METRICS = ("flops", "params", "activations", "latency")
SAMPLERS = ("tpe", "random", "nsga2", "evolution")
PRUNERS = ("median", "hyperband", "none")
# The budget of a search given neither --n-trials nor --timeout: a first search that ends
# in under 20 minutes even on a slow 2-core CPU (a proxy trial takes 1.5-4 min there).
DEFAULT_TRIALS = 12
DEFAULT_TIMEOUT = 18 * 60
# Give up when this many genomes in a row fall outside the target window: the space and
# the target do not fit together.
MAX_CONSECUTIVE_SCREENED = 2000

# Study attributes that must match when a study is resumed: changing any of them would
# mix incomparable scores in one study. (The prescreen is recorded too, but only decides
# which genomes are trained, so a resumed study may change it.)
_IDENTITY_ATTRS = ("target", "metric", "alpha", "beta", "objective", "evaluator", "dataset",
                   "resolution", "proxy_resolution", "proxy_subset", "proxy_epochs",
                   "proxy_val_size", "latency_table")


@dataclass(frozen=True)
class SearchConfig:
    target: float  # in the metric's unit; multiply-adds for "flops"
    metric: str = "flops"
    alpha: float = -0.07  # reward exponent at or below the target (MnasNet soft constraint)
    beta: float = -0.07  # reward exponent above the target
    objective: str = "single"  # "single": maximise the reward; "multi": (accuracy, cost) Pareto
    evaluator: str = "proxy-train"
    dataset: str = "fashion-mnist"
    data_dir: Optional[str] = None
    resolution: Optional[int] = None  # deployment resolution of the costs; None: the space's
    proxy_resolution: int = PROXY_DEFAULTS["resolution"]
    proxy_subset: int = PROXY_DEFAULTS["subset"]
    proxy_epochs: int = PROXY_DEFAULTS["epochs"]
    # Held-out training images the proxy accuracy is measured on, every epoch: at 5,000 an
    # accuracy near 87% has a standard error of half a point; fewer make trials faster.
    proxy_val_size: int = PROXY_DEFAULTS["val_size"]
    # Zero-cost score a genome of the target window must reach (the median of the window's
    # earlier candidates) before it is trained; used with proxy-train in a single-objective
    # search with a cost window, where size is nearly fixed. Elsewhere a zero-cost score,
    # which grows with size, would only favour the larger genomes.
    prescreen: str = "naswot"
    n_trials: int = DEFAULT_TRIALS  # total for the study, over all workers and restarts
    # Seconds for this process; no trial starts that the median trial says would overrun it.
    timeout: Optional[float] = None
    seed: int = 0
    sampler: Optional[str] = None  # None: TPE for one objective, NSGA-II for the Pareto search
    population_size: int = POPULATION_SIZE  # regularized evolution's population
    # Members per tournament, the best of them mutated; None: the whole population.
    tournament_size: Optional[int] = None
    pruner: str = "median"
    cost_window: float = 0.1  # evaluate only genomes within target x (1 +- window); 0: all
    study: Optional[str] = None
    storage: Optional[str] = None
    runs_dir: str = "runs"
    space_path: Optional[str] = None
    # metric "latency": the table that prices genomes (nas.latency), refused when measured
    # on another machine unless allow_foreign_table
    latency_table: Optional[str] = None
    allow_foreign_table: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.sampler is None:
            object.__setattr__(self, "sampler", "nsga2" if self.objective == "multi" else "tpe")
        checks = [
            (self.metric in METRICS, f"--metric must be one of {', '.join(METRICS)}"),
            (self.evaluator in EVALUATORS, f"unknown evaluator {self.evaluator!r}; choose one "
                                           f"of {', '.join(EVALUATORS)}"),
            (self.sampler is None or self.sampler in SAMPLERS, f"--sampler must be one of {', '.join(SAMPLERS)}"),
            (self.sampler != "evolution" or self.objective == "single",
             "--sampler evolution optimises one objective; with --objective multi use nsga2, "
             "tpe or random"),
            (self.population_size >= 2, "--population-size must be at least 2"),
            (self.tournament_size is None or 1 <= self.tournament_size <= self.population_size,
             f"--tournament-size must be between 1 and --population-size "
             f"({self.population_size})"),
            (self.pruner in PRUNERS, f"--pruner must be one of {', '.join(PRUNERS)}"),
            (self.prescreen in PRESCREENS,
             f"--prescreen must be one of {', '.join(PRESCREENS)}"),
            (self.objective in ("single", "multi"), "--objective must be single or multi"),
            (math.isfinite(self.target) and self.target > 0, "the target must be positive"),
            (self.n_trials >= 1, "--n-trials must be at least 1"),
            (0 <= self.seed <= MAX_SEED, f"--seed must be a whole number from 0 to {MAX_SEED}"),
            (0 <= self.cost_window < 1, "--cost-window must be in [0, 1)"),
            (self.timeout is None or self.timeout > 0, "--timeout must be positive"),
            (all(math.isfinite(x) and abs(x) <= 10 for x in (self.alpha, self.beta)),
             "--alpha/--beta must be finite numbers in [-10, 10]"),
            (self.proxy_resolution >= 8, "--proxy-resolution must be at least 8"),
            (self.proxy_subset >= 10, "--proxy-subset must be at least 10"),
            (self.proxy_epochs >= 1, "--proxy-epochs must be at least 1"),
            (self.proxy_val_size >= 10, "--proxy-val-size must be at least 10"),
            (self.resolution is None or 8 <= self.resolution <= 4096,
             "--resolution must be in [8, 4096]"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    @property
    def active_prescreen(self) -> Optional[str]:
        if self.prescreen == "none" or self.evaluator != "proxy-train" \
                or self.objective != "single" or not self.cost_window:
            return None
        return self.prescreen


def default_study_name(config: SearchConfig) -> str:
    """``fashion-mnist-400M-proxy-train``: the study a repeated command resumes."""
    target = (f"{1e3 * config.target:g}ms" if config.metric == "latency"
              else format_count(config.target).replace(".0", ""))
    parts = [config.dataset, target]
    if config.metric != "flops":
        parts.append(config.metric)
    parts.append(config.evaluator)
    if config.objective == "multi":
        parts.append("pareto")
    return "-".join(parts)


def _genome_digest(genome: Genome) -> str:
    return hashlib.sha1(genome.key().encode()).hexdigest()[:16]


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


def _make_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    if config.pruner == "none" or config.evaluator != "proxy-train" or config.objective == "multi":
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.proxy_epochs)
    # Three finished trials set the bar: a quick search has few, and each pruned one saves
    # two of its three epochs.
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def _check_space_fits(space: SearchSpace, config: SearchConfig, metric_of) -> None:
    if config.metric == "latency" or config.objective == "multi":
        return
    lowest, highest = metric_of(space.smallest()), metric_of(space.largest())
    window_low = config.target * (1 - config.cost_window)
    window_high = config.target * (1 + config.cost_window) if config.cost_window else math.inf
    if lowest > window_high:
        raise SpaceError(f"every genome of the space exceeds the target: the smallest has "
                         f"{format_count(lowest)} {config.metric}, above "
                         f"{format_count(window_high)}; raise --target-flops or shrink the space")
    if config.cost_window and highest < window_low:
        raise SpaceError(f"every genome of the space is below the target window: the largest "
                         f"has {format_count(highest)} {config.metric}, below "
                         f"{format_count(window_low)}; lower the target or use --cost-window 0")


class _Search:
    """State of one worker's search; :func:`run_search` is the public entry."""

    def __init__(self, config: SearchConfig) -> None:
        self.config = config
        if not log.isEnabledFor(logging.INFO):
            # Optuna logs every trial at INFO; the progress bar and summary say it better.
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        # A second Ctrl-C may land inside Optuna's trial bookkeeping, which would log the
        # trial as failed with a traceback.
        quiet_stops_in("optuna")
        self.space = (SearchSpace.from_file(config.space_path) if config.space_path
                      else SearchSpace.default())
        self.resolution = config.resolution or self.space.resolution
        self.study_name = config.study or default_study_name(config)
        if not self.study_name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise UsageError(f"--study {self.study_name!r} may use letters, digits, '-', '_' "
                             "and '.' only (it names a folder)")
        self.run_dir = Path(config.runs_dir) / self.study_name
        self.reward_spec = RewardSpec(config.target, config.alpha, config.beta)
        from .evaluators import make_evaluator  # torch: not needed to check the flags

        self.evaluator = make_evaluator(
            config.evaluator, dataset=config.dataset, data_dir=config.data_dir,
            resolution=config.proxy_resolution, subset=config.proxy_subset,
            epochs=config.proxy_epochs, val_size=config.proxy_val_size, seed=config.seed,
            quiet=config.quiet)
        self.prescreen = None if config.active_prescreen is None else make_evaluator(
            config.active_prescreen, dataset=config.dataset, data_dir=config.data_dir,
            resolution=config.proxy_resolution, val_size=config.proxy_val_size,
            seed=config.seed)
        self.latency = None
        if config.metric == "latency":
            from .latency.use import SearchLatency, table_path

            self.latency = SearchLatency(
                table_path(config.latency_table), allow_foreign=config.allow_foreign_table,
                space=self.space, space_path=config.space_path, resolution=self.resolution,
                num_classes=self.evaluator.num_classes, in_channels=self.evaluator.in_channels)
            self.latency.check_target(config.target, config.cost_window)
        _check_space_fits(self.space, config, self._metric_of)
        run = RunFolder(self.run_dir, config.storage)
        self.storage_url = run.storage_url
        self.study = self._open_study(run.open_storage())
        self.artifacts = trial_notes.artifact_store_for(self.run_dir)
        self.digests: dict[str, FrozenTrial] = {}
        self.prescreened: dict[str, FrozenTrial] = {}  # digest -> a trial the prescreen rejected
        self.screened_in_a_row = 0
        self.best_reward = -math.inf

    # -- setup ----------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        c = self.config
        return {"target": c.target, "metric": c.metric, "alpha": c.alpha, "beta": c.beta,
                "objective": c.objective, "evaluator": c.evaluator, "dataset": c.dataset,
                "resolution": self.resolution, "proxy_resolution": c.proxy_resolution,
                "proxy_subset": c.proxy_subset, "proxy_epochs": c.proxy_epochs,
                "proxy_val_size": c.proxy_val_size,
                "prescreen": c.active_prescreen or "none",
                **({"latency_table": self.latency.digest} if self.latency else {})}

    def _open_study(self, storage: optuna.storages.BaseStorage) -> optuna.Study:
        directions = (["maximize", "minimize"] if self.config.objective == "multi"
                      else ["maximize"])
        try:
            existing = optuna.load_study(study_name=self.study_name, storage=storage)
        except KeyError:
            existing = None
        except Exception as error:  # driver errors while reading
            raise StorageError(f"cannot read study {self.study_name!r} from "
                               f"{mask_url(self.storage_url)}: {mask_url(error)}") from None
        if existing is not None:
            recorded = existing.user_attrs
            for key in _IDENTITY_ATTRS:
                if key in recorded and recorded[key] != self._identity()[key]:
                    raise UsageError(
                        f"study {self.study_name!r} was made with {key}={recorded[key]!r}, this "
                        f"run asks {key}={self._identity()[key]!r}; pass another --study to "
                        "start a new study")
            trials_before = len(existing.get_trials(deepcopy=False))
        else:
            trials_before = 0
        # A resumed or parallel worker must not replay the sampler's random sequence of the
        # first run, or its proposals would all be duplicates.
        # Kept to 32 bits, as the samplers' seeds must be, however far the study has run.
        seed = (self.config.seed + 7919 * trials_before) % (MAX_SEED + 1)
        if self.config.storage:
            seed ^= int(hashlib.sha1(worker_id().encode()).hexdigest()[:8], 16)
        try:
            study = optuna.create_study(
                study_name=self.study_name, storage=storage, load_if_exists=True,
                directions=directions, sampler=make_sampler(self.config, seed),
                pruner=_make_pruner(self.config))
        except ValueError as error:
            raise UsageError(f"study {self.study_name!r}: {error}") from None
        # Also names those of a study made before objectives had names.
        name_objectives(study, objective_names(self.config.objective, self.config.metric))
        if existing is None:
            for key, value in {**self._identity(), "num_classes": self.evaluator.num_classes,
                               "in_channels": self.evaluator.in_channels,
                               "space": str(self.space.source),
                               **(self.latency.study_attrs() if self.latency else {}),
                               "storage": mask_url(self.storage_url)}.items():
                study.set_user_attr(key, value)
        return study

    def _metric_of(self, genome: Genome) -> float:
        if self.latency is not None:
            return self.latency.predict(genome)
        return getattr(self._cost(genome), self.config.metric)

    def _cost(self, genome: Genome):
        return cost(genome, self.resolution, self.evaluator.num_classes,
                    self.evaluator.in_channels)

    # -- one trial ------------------------------------------------------------------------

    def _stoppable_objective(self, trial: optuna.Trial):
        """The objective; a stop request during it prunes the trial as interrupted (it then
        holds no share of the budget, and Optuna logs no traceback for a pruned trial)."""
        try:
            return self._objective(trial)
        except StopRequested as stop:
            reason = f"interrupted by {stop} during its evaluation; not counted"
            trial.set_user_attr("interrupted", reason)
            raise optuna.TrialPruned(reason) from None

    def _objective(self, trial: optuna.Trial):
        config = self.config
        genome = self.space.sample(trial, name=f"{self.study_name}-trial{trial.number}")
        costs = self._cost(genome)
        value = (self._metric_of(genome) if config.metric == "latency"
                 else getattr(costs, config.metric))
        digest = _genome_digest(genome)
        for key, item in {"worker": worker_id(), "genome": genome.to_dict(), "digest": digest,
                          "flops": costs.flops, "params": costs.params,
                          "activations": costs.activations, "cost": value,
                          "evaluator": config.evaluator,
                          **({"latency_predicted": value} if self.latency else {})}.items():
            trial.set_user_attr(key, item)
        if config.objective == "single" and config.cost_window:
            low, high = config.target * (1 - config.cost_window), config.target * (1 + config.cost_window)
            if not low <= value <= high:
                reason = (f"{config.metric} {format_count(value)} outside the target window "
                          f"{format_count(low)}..{format_count(high)}; not evaluated")
                trial.set_user_attr("screened", reason)
                raise optuna.TrialPruned(reason)
        previous = self.digests.get(digest)
        if previous is None and self.prescreen is not None:
            self._prescreen(trial, genome)
        self.screened_in_a_row = 0
        self._claim_budget(trial)
        started = time.perf_counter()
        if previous is not None:
            accuracy = previous.user_attrs["accuracy"]
            trial.set_user_attr("reused_from", previous.number)
        else:
            try:
                accuracy = self.evaluator.evaluate(genome, on_epoch=self._pruning_callback(trial))
            except EvaluationFailed as error:
                trial.set_user_attr("fail_reason", str(error))
                raise
        score = reward(accuracy, value, self.reward_spec)
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("reward", score)
        trial.set_user_attr("eval_seconds", round(time.perf_counter() - started, 3))
        trial_notes.write_trial_note(trial, genome, costs, accuracy=accuracy, reward=score,
                                     resolution=self.resolution)
        trial_notes.attach_trial_artifacts(self.study, trial, genome, self.artifacts)
        if config.objective == "multi":
            return accuracy, value
        return score

    def _prescreen(self, trial: optuna.Trial, genome: Genome) -> None:
        """Train only a genome whose zero-cost score reaches the median of the window's
        earlier candidates: the score ranks genomes better than a short training does, and
        costs a fraction of a second where a proxy training costs minutes."""
        if is_requeued_copy(self.study, trial):
            return  # the retry of a trial whose worker died: it was judged worth training
        rejected = self.prescreened.get(_genome_digest(genome))
        if rejected is not None:
            # Rejected before, also in an earlier run: the verdict stands, without a second
            # zero-cost evaluation.
            trial.set_user_attr("prescreen_score", rejected.user_attrs["prescreen_score"])
            reason = f"the same genome as trial {rejected.number}, which the prescreen did not train"
            trial.set_user_attr("screened", reason)
            raise optuna.TrialPruned(reason)
        try:
            score = self.prescreen.evaluate(genome)
        except EvaluationFailed:
            return  # no zero-cost opinion; training decides
        trial.set_user_attr("prescreen_score", score)
        earlier = [t.user_attrs["prescreen_score"]
                   for t in self.study.get_trials(deepcopy=False)
                   if "prescreen_score" in t.user_attrs and t.number != trial.number]
        bar = statistics.median(earlier) if earlier else -math.inf
        if score < bar:
            reason = (f"{self.prescreen.name} score {score:.4g} below the median {bar:.4g} of "
                      f"the {len(earlier)} earlier candidates in the window; not trained")
            trial.set_user_attr("screened", reason)
            raise optuna.TrialPruned(reason)

    def _claim_budget(self, trial: optuna.Trial) -> None:
        """Evaluate only if this trial is among the first ``n_trials`` that count.

        Workers check the budget before asking for a trial, but several can pass that check
        at once; trial numbers are handed out atomically by the storage, so letting the
        lower numbers win makes the total exact without a lock."""
        counted = sorted({*budget_holders(self.study.get_trials(deepcopy=False)),
                          trial.number})
        if trial.number not in counted[: self.config.n_trials]:
            trial.set_user_attr("over_budget", True)
            raise optuna.TrialPruned("the study's trial budget was reached by other workers")

    def _pruning_callback(self, trial: optuna.Trial) -> Optional[Callable[[int, float], None]]:
        if self.config.objective == "multi":
            return None  # Optuna prunes single-objective studies only

        def on_epoch(epoch: int, val_accuracy: float) -> None:
            trial.report(val_accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation accuracy {val_accuracy:.4f} at epoch "
                                         f"{epoch} below the pruner's bar")

        return on_epoch

    # -- the loop -------------------------------------------------------------------------

    def _refresh(self) -> int:
        trials = self.study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state == TrialState.COMPLETE and "digest" in trial.user_attrs \
                    and "reused_from" not in trial.user_attrs:
                self.digests.setdefault(trial.user_attrs["digest"], trial)
            if "prescreen_score" in trial.user_attrs and "screened" in trial.user_attrs \
                    and "digest" in trial.user_attrs:
                self.prescreened.setdefault(trial.user_attrs["digest"], trial)
            if trial.state == TrialState.COMPLETE and "reward" in trial.user_attrs:
                self.best_reward = max(self.best_reward, trial.user_attrs["reward"])
        return budget_used(trials)

    def run(self) -> SearchResult:
        config = self.config
        started = time.monotonic()
        revived = fail_dead_local_workers(self.study)
        if revived:
            log.warning("re-queued trial(s) %s of a search that was killed", revived)
        used = self._refresh()
        interrupted = out_of_time = False
        evaluated_seconds: list[float] = []  # wall time of this process's full evaluations
        progress = tqdm(total=config.n_trials, initial=min(used, config.n_trials), unit="trial",
                        desc=f"search {self.study_name}", disable=config.quiet, dynamic_ncols=True)
        # Ctrl-C or SIGTERM: the running trial stops at its next training step (pruned as
        # interrupted, outside the budget) and no trial starts after it.
        stop_handling = contextlib.ExitStack()
        stop_handling.enter_context(handle_signals(graceful=True))
        try:
            while True:
                check_stop()
                remaining = (None if not config.timeout
                             else config.timeout - (time.monotonic() - started))
                # Stop before a trial that would overrun the time budget, not in the middle.
                if remaining is not None and (remaining <= 0 or (
                        evaluated_seconds and remaining < statistics.median(evaluated_seconds))):
                    out_of_time = used < config.n_trials
                    break
                if used >= config.n_trials:
                    # Trials running elsewhere hold the rest of the budget; if their worker
                    # dies, its re-queued copy must still be run by someone.
                    wait_for_running_trials(self.study, timeout=remaining)
                    # Look again whatever the wait returned: a trial that another worker
                    # failed and re-queued meanwhile gives the budget back, and nobody else
                    # may be left to run it.
                    used = self._refresh()
                    if used >= config.n_trials and not self.study.get_trials(
                            deepcopy=False, states=(TrialState.RUNNING,)):
                        break
                    continue
                self.study.optimize(passing_machine_faults(self._stoppable_objective),
                                    n_trials=1, catch=(EvaluationFailed,),
                                    gc_after_trial=False, show_progress_bar=False)
                trial = last_trial_of_worker(self.study)
                if trial is not None and trial.state == TrialState.COMPLETE \
                        and "eval_seconds" in trial.user_attrs and "reused_from" not in \
                        trial.user_attrs and trial.duration is not None:
                    evaluated_seconds.append(trial.duration.total_seconds())
                if trial is not None and "screened" in trial.user_attrs:
                    self.screened_in_a_row += 1
                    if self.screened_in_a_row >= MAX_CONSECUTIVE_SCREENED:
                        raise SpaceError(
                            f"{MAX_CONSECUTIVE_SCREENED} genomes in a row fell outside the "
                            "target window; widen --cost-window or change the target")
                    if self.screened_in_a_row % 20:
                        continue  # the budget only moves when others finish: look now and then
                new_used = self._refresh()
                progress.update(max(0, min(new_used, config.n_trials) - progress.n))
                used = new_used
                if trial is not None:
                    self._report_trial(trial, progress)
        except BaseException as error:
            if not stopped(error):
                raise
            interrupted = True
            progress.write("interrupted: writing what the study holds so far")
        finally:
            stop_handling.close()
            progress.close()
        result = write_outputs(self.study, self.run_dir)
        result.wall_seconds = time.monotonic() - started
        result.interrupted = interrupted
        result.out_of_time = out_of_time
        return result

    def _report_trial(self, trial: FrozenTrial, progress: tqdm) -> None:
        attrs = trial.user_attrs
        if trial.state == TrialState.FAIL:
            progress.write(f"trial {trial.number} failed: {attrs.get('fail_reason', 'no reason')}")
        postfix = {"best_reward": f"{self.best_reward:.4f}" if self.best_reward > -math.inf else "-"}
        if "accuracy" in attrs:
            postfix["last_acc"] = f"{attrs['accuracy']:.4f}"
        if "flops" in attrs:
            postfix["last_madds"] = format_count(attrs["flops"])
        if attrs.get("eval_seconds"):
            postfix["last_s"] = f"{attrs['eval_seconds']:.0f}"
        progress.set_postfix(postfix, refresh=True)


# -- entry point ------------------------------------------------------------------------


def _worker(config: SearchConfig, threads: int) -> None:
    import torch

    # A SIGKILLed `nas search` must not leave helpers running trials into the study.
    die_with_parent()
    torch.set_num_threads(threads)
    _Search(config).run()


def run_search(config: SearchConfig, *, jobs: int = 1) -> SearchResult:
    """Run (or resume) the search; with ``jobs > 1``, ``jobs - 1`` more worker processes
    share the study through its storage, each with a share of the CPU threads."""
    search = _Search(config)
    if jobs <= 1:
        return _measure_latency(search, search.run())
    import multiprocessing
    import os

    import torch

    threads = max(1, (os.cpu_count() or 1) // jobs)
    torch.set_num_threads(threads)
    shared = dataclasses.replace(config, storage=search.storage_url, study=search.study_name,
                                 quiet=True)
    context = multiprocessing.get_context("spawn")
    helpers = [context.Process(target=_worker, args=(shared, threads), daemon=True)
               for _ in range(jobs - 1)]
    for helper in helpers:
        helper.start()
    try:
        result = search.run()
    except BaseException:
        for helper in helpers:
            helper.terminate()
        raise
    for helper in helpers:
        if result.interrupted:
            helper.terminate()
        helper.join()
    # The other workers may have finished trials after this one wrote its outputs.
    final = write_outputs(search.study, search.run_dir)
    final.wall_seconds, final.interrupted = result.wall_seconds, result.interrupted
    return _measure_latency(search, final)


def _measure_latency(search: _Search, result: SearchResult) -> SearchResult:
    """A latency search measures its best trials whole at the end, beside the predictions."""
    if search.latency is not None and not result.interrupted:
        result.latency_measured = search.latency.measure_top(
            search.study.get_trials(deepcopy=False), search.run_dir)
    return result
