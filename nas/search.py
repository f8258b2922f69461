"""The search: Optuna trials over a :class:`~space.SearchSpace`, scored by the MnasNet reward.

Where its parts live: what a search is asked to do (:class:`SearchConfig`, its options
and bounds) in :mod:`nas.search_config`; the study, its sampler and pruner in
:mod:`nas.search_study`; one trial (screening, prescreen, budget claim, evaluation,
pruning) in :mod:`nas.objective`; what a trial records and which trials count against
the budget in :mod:`nas.trial`; the reference networks every study evaluates in
:mod:`nas.references`; the re-training of the best few (``--confirm-top``) in
:mod:`nas.confirm`; the outputs, and how the best is chosen, in :mod:`nas.results` and
:mod:`nas.selection`. This module runs the workers' loop: references first, then trials
until the budget is spent, then the confirmation.

``n_trials`` is the study's total budget, shared by every worker on the same storage: the
trials that evaluated something (complete, pruned by the pruner, failed by their own
evaluation) plus those running now. Screened trials do not count. A dead worker's trial
is failed and re-queued; its share of the budget passes to the queued copy, which some
worker then runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from space import SearchSpace

from . import trial_notes
from .common import die_with_parent, format_count
from .confirm import confirm_top
from .memory import usable_cores
from .objective import Objective, Pricing, check_space_fits
from .outputs import passing_machine_faults
from .references import (enqueue_references, scored_directly, unsettled_references,
                         waiting_references)
from .protocol import EvaluationFailed
from .results import SearchResult, write_outputs
from .run import RunFolder
from .search_config import (DEFAULT_TIMEOUT, DEFAULT_TRIALS, METRICS, PRUNERS, SAMPLERS,
                            SearchConfig, check_study_name, default_study_name)
from .search_study import make_sampler, open_search_study
from .settings import SettingError
from .signals import check_stop, handle_signals, quiet_stops_in, stopped
from .storage import (fail_dead_local_workers, storage_of, taken_as_stale, trial_id,
                      wait_for_running_trials)
from .trial import TrialRecord, budget_used, last_trial_of_worker

__all__ = ["SearchConfig", "SearchResult", "run_search", "METRICS", "SAMPLERS", "PRUNERS",
           "DEFAULT_TRIALS", "DEFAULT_TIMEOUT", "default_study_name", "budget_used",
           "write_outputs", "make_sampler"]

log = logging.getLogger(__name__)

# Give up when this many genomes in a row fall outside the target window: the space and
# the target do not fit together.
MAX_CONSECUTIVE_SCREENED = 2000


class _QuietTakenTrials(logging.Filter):
    """Drops Optuna's records of a trial that another worker took as stale (see
    :meth:`_Search._one_trial`): Optuna logs it as failed, with the traceback of the write
    that the storage refused, but its evaluation did not fail, and the search says what
    happened in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Trial {number} failed") for number in self.numbers)


_TAKEN_AS_STALE = _QuietTakenTrials()


class _Search:
    """One worker's search; :func:`run_search` is the public entry."""

    def __init__(self, config: SearchConfig) -> None:
        self.config = config
        if not log.isEnabledFor(logging.INFO):
            # Optuna logs every trial at INFO; the progress bar and summary say it better.
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        # A second Ctrl-C may land inside Optuna's trial bookkeeping, which would log the
        # trial as failed with a traceback.
        quiet_stops_in("optuna")
        for handler in logging.getLogger("optuna").handlers:
            if _TAKEN_AS_STALE not in handler.filters:
                handler.addFilter(_TAKEN_AS_STALE)
        self.space = (SearchSpace.from_file(config.space_path) if config.space_path
                      else SearchSpace.default())
        resolution = config.resolution or self.space.resolution
        self.study_name = check_study_name(config.study or default_study_name(config))
        self.run_dir = Path(config.runs_dir) / self.study_name
        from .evaluators import make_evaluator  # torch: not needed to check the flags

        # Evaluators that need more (a supernet: the space and where to keep its weights)
        # take these; the rest ignore them.
        extra = {"dataset": config.dataset, "data_dir": config.data_dir, "seed": config.seed,
                 "proxy": config.proxy, "space": self.space, "runs_dir": config.runs_dir}
        evaluator = make_evaluator(config.evaluator, quiet=config.quiet,
                                   supernet=config.supernet, **extra)
        prescreen = None if config.active_prescreen is None else make_evaluator(
            config.active_prescreen, **extra)
        self.latency = None
        if config.metric == "latency":
            from .latency.use import SearchLatency, table_path

            self.latency = SearchLatency(
                table_path(config.latency_table), allow_foreign=config.allow_foreign_table,
                space=self.space, space_path=config.space_path, resolution=resolution,
                num_classes=evaluator.num_classes, in_channels=evaluator.in_channels)
            self.latency.check_target(config.target, config.cost_window)
        pricing = Pricing(config.metric, resolution, evaluator.num_classes,
                          evaluator.in_channels, self.latency)
        check_space_fits(self.space, config, pricing)
        run = RunFolder(self.run_dir, config.storage)
        self.storage_url = run.storage_url
        self.study = open_search_study(
            config, self.study_name, run,
            config.identity(resolution, self.latency.digest if self.latency else None,
                            evaluator.settings().get("supernet_digest")),
            {"num_classes": evaluator.num_classes, "in_channels": evaluator.in_channels,
             "space": str(self.space.source),
             **(self.latency.study_attrs() if self.latency else {})})
        self.objective = Objective(config, space=self.space, pricing=pricing,
                                   evaluator=evaluator, prescreen=prescreen, study=self.study,
                                   artifacts=trial_notes.artifact_store_for(self.run_dir),
                                   study_name=self.study_name)
        self.screened_in_a_row = 0

    def _refresh(self) -> int:
        trials = self.study.get_trials(deepcopy=False)
        self.objective.learn(trials)
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
        progress = _Progress(config.n_trials, used, f"search {self.study_name}", config.quiet)
        # Ctrl-C or SIGTERM: the running trial stops at its next training step (pruned as
        # interrupted, outside the budget) and no trial starts after it.
        stop_handling = contextlib.ExitStack()
        stop_handling.enter_context(handle_signals(graceful=True))
        if config.timeout:
            self.objective.deadline = started + config.timeout
        direct, trained = scored_directly(self.objective.evaluator, config.reference_names)
        try:
            self._run_references(direct)
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
                    if self._budget_spent(remaining):
                        break
                    used = self._refresh()
                    continue
                trial = self._one_trial()
                if trial is not None and TrialRecord(trial).state == "complete" \
                        and "eval_seconds" in trial.user_attrs and trial.duration is not None:
                    evaluated_seconds.append(trial.duration.total_seconds())
                if trial is not None and "screened" in trial.user_attrs \
                        and self.screened_in_a_row % 20:
                    continue  # the budget only moves when others finish: look now and then
                used = self._refresh()
                progress.trial(trial, used, self.objective.best_reward)
            # After the search, not before it: their training could take the whole budget.
            missing = unsettled_references(self.study, trained)
            if missing and out_of_time:
                progress.write(f"reference network(s) {', '.join(missing)} not evaluated: "
                               f"the {config.evaluator} evaluator cannot score them and the "
                               "time budget left no room for their training; a longer "
                               "--timeout trains them")
            elif missing:
                self._run_references(missing)
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

    def _run_references(self, names: Sequence[str]) -> None:
        """Evaluate those of the reference networks ``names`` this study lacks
        (:mod:`nas.references`): queued in the storage, then run by whichever worker takes
        them, this one first."""
        enqueue_references(self.study, names)
        for _ in range(waiting_references(self.study)):
            check_stop()
            if not waiting_references(self.study):
                break
            self._one_trial()

    def _budget_spent(self, remaining: Optional[float]) -> bool:
        """With the budget used, whether this worker is done: trials running elsewhere
        hold the rest of it, and if their worker dies, its re-queued copy must still be
        run by someone."""
        wait_for_running_trials(self.study, timeout=remaining)
        # Look again whatever the wait returned: a trial that another worker failed and
        # re-queued meanwhile gives the budget back, and nobody else may be left to run it.
        return self._refresh() >= self.config.n_trials and not self.study.get_trials(
            deepcopy=False, states=(TrialState.RUNNING,))

    def _one_trial(self) -> Optional[FrozenTrial]:
        """Run one trial; returns it as stored (None if Optuna recorded none of ours)."""
        handed: list[int] = []  # the id of the trial Optuna hands the objective

        def objective(trial: optuna.Trial):
            handed.append(trial_id(trial))
            try:
                return self.objective(trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                if taken_as_stale(self.study, handed[-1]):
                    _TAKEN_AS_STALE.numbers.add(trial.number)
                raise

        try:
            self.study.optimize(passing_machine_faults(objective), n_trials=1,
                                catch=(EvaluationFailed,), gc_after_trial=False,
                                show_progress_bar=False)
        except Exception:
            # Another worker heard no heartbeat from this one for the grace period, failed
            # the trial and queued its copy, which the budget now counts instead: this
            # worker's writes to the trial fail, and Optuna cannot tell it either.
            if not handed or not taken_as_stale(self.study, handed[-1]):
                raise
            log.warning("trial %d of this worker was failed and re-queued by another worker "
                        "that heard no heartbeat from it within the grace period (is this "
                        "machine overloaded?); its evaluation here is dropped and the queued "
                        "copy takes its place", storage_of(self.study).get_trial(handed[-1]).number)
            return None
        trial = last_trial_of_worker(self.study)
        if trial is None:
            return None
        if "screened" not in trial.user_attrs:
            self.screened_in_a_row = 0
            return trial
        self.screened_in_a_row += 1
        if self.screened_in_a_row >= MAX_CONSECUTIVE_SCREENED:
            raise SettingError("{n} genomes in a row fell outside the target window; widen "
                               "{cost_window} or change the target", n=MAX_CONSECUTIVE_SCREENED)
        return trial


class _Progress:
    """The search's progress: on a terminal a bar, redrawn after each trial; elsewhere (a
    log file, CI), where each redraw would be a line of its own, one line per trial."""

    def __init__(self, total: int, used: int, description: str, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.terminal = sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=min(used, total), unit="trial", desc=description,
                        disable=quiet or not self.terminal, dynamic_ncols=True)

    def trial(self, trial: Optional[FrozenTrial], used: int, best_reward: float) -> None:
        """After a trial of this worker (None: one it has no record of), ``used`` trials
        of the budget spent."""
        self.bar.update(max(0, min(used, self.total) - self.bar.n))
        if trial is None:
            return
        record = TrialRecord(trial)
        if record.state == "failed":
            self.write(f"trial {trial.number} failed: {record.note or 'no reason'}")
        facts = {"best_reward": f"{best_reward:.4f}" if best_reward > -math.inf else "-"}
        if record.accuracy is not None:
            facts["last_acc"] = f"{record.accuracy:.4f}"
        if record.costs()["flops"] is not None:
            facts["last_madds"] = format_count(record.costs()["flops"])
        if record.attrs.get("eval_seconds"):
            facts["last_s"] = f"{record.attrs['eval_seconds']:.0f}"
        self.bar.set_postfix(facts, refresh=True)
        if not self.quiet and not self.terminal:
            print(f"trial {trial.number} {record.state}: {min(used, self.total)}/{self.total} "
                  "trials, " + ", ".join(f"{key} {value}" for key, value in facts.items()),
                  file=sys.stderr, flush=True)

    def write(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


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
        return _measure_latency(search, _confirm(search, search.run()))
    import multiprocessing

    import torch

    threads = max(1, usable_cores() // jobs)
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
    final.out_of_time = result.out_of_time
    return _measure_latency(search, _confirm(search, final))


def _confirm(search: _Search, result: SearchResult) -> SearchResult:
    """With ``--confirm-top``, once the budget is spent: confirm the best genomes and the
    references (:mod:`nas.confirm`) and write the outputs again, chosen by confirmed reward."""
    if not search.config.confirm_top or result.interrupted or result.out_of_time:
        return result
    started = time.monotonic()
    interrupted = False
    with handle_signals(graceful=True):
        try:
            confirm_top(search.study, search.config, quiet=search.config.quiet)
        except BaseException as error:
            if not stopped(error):
                raise
            interrupted = True  # the seeds trained so far are kept: a rerun goes on
    final = write_outputs(search.study, search.run_dir)
    final.wall_seconds = result.wall_seconds + time.monotonic() - started
    final.interrupted = interrupted
    return final


def _measure_latency(search: _Search, result: SearchResult) -> SearchResult:
    """A latency search measures its best trials whole at the end, beside the predictions."""
    if search.latency is not None and not result.interrupted:
        result.latency_measured = search.latency.measure_top(
            search.study.get_trials(deepcopy=False), search.run_dir)
    return result
