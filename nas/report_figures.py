"""The figures ``nas report`` draws of a study's trials (:class:`nas.trial.TrialRecord`):
the optimization history with the best so far; accuracy and reward against the search's
cost metric with the target and the Pareto front; the stage-choice importances (Optuna's
PED-ANOVA, which needs no extra package); trial states and durations.

Reference networks (state "reference") are drawn beside the searched trials, never as one
of them: not in the history, the Pareto front, the importances or the best trial."""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional, Sequence

import optuna

from .common import format_count
from .figures import Figure, Panel, Series
from .protocol import is_accuracy
from .results import pareto_front
from .study_view import ScreenedCount
from .trial import TrialRecord

__all__ = ["MIN_TRIALS_FOR_IMPORTANCE", "METRIC_LABELS", "pareto_front", "searched",
           "score_label", "history_figure", "cost_figure", "importances_figure",
           "states_figure"]

# PED-ANOVA compares the best 10% of trials with all of them; with fewer than this many
# evaluated trials its top group has one trial and Optuna returns equal importances.
MIN_TRIALS_FOR_IMPORTANCE = 10

METRIC_LABELS = {"flops": "multiply-adds", "params": "parameters", "activations": "activations",
                 "latency": "latency (s)"}
# One colour per state of nas.trial.STATES that the states figure draws; screened and
# prescreened trials are one bar, "screened" (they are counted, not read).
_STATE_COLOURS = {"complete": "#0072B2", "reused": "#56B4E9", "reference": "#000000",
                  "screened": "#999999", "pruned": "#E69F00", "over_budget": "#F0E442",
                  "interrupted": "#882255", "failed": "#D55E00", "running": "#009E73",
                  "waiting": "#CC79A7"}


def searched(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The evaluated trials of genomes the search proposed (reused ones included)."""
    return [r for r in records if r.evaluated and r.state != "reference"]


def history_figure(records: Sequence[TrialRecord], multi: bool) -> Optional[Figure]:
    key = "accuracy" if multi else "reward"
    evaluated = [r for r in searched(records) if getattr(r, key) is not None]
    if not evaluated:
        return None
    values = [getattr(r, key) for r in evaluated]
    numbers = [r.number for r in evaluated]
    best, running = [], -math.inf
    for value in values:
        running = max(running, value)
        best.append(running)
    label = "accuracy (objective 1)" if multi else "reward ACC \u00d7 (cost/T)^w"
    panel = Panel(title="optimization history", x_label="trial", y_label=label, series=(
        Series(x=tuple(numbers), y=tuple(values), name=f"evaluated trials ({len(values)})",
               colour=_STATE_COLOURS["complete"],
               text=tuple(f"trial {n}" for n in numbers)),
        Series(x=tuple(numbers), y=tuple(best), name="best so far", kind="steps",
               colour="#D55E00")))
    return Figure(key="history", title="Optimization history", panels=(panel,),
                  caption=f"The {key} of every evaluated trial, in trial order, and the best "
                          "so far. Screened, pruned and failed trials have no score and are "
                          "left out.")


def _reference_series(records: Sequence[TrialRecord], key: str) -> tuple[Series, ...]:
    references = [r for r in records if r.evaluated and r.state == "reference"
                  and getattr(r, key) is not None]
    if not references:
        return ()
    return (Series(x=tuple(r.cost for r in references), y=tuple(getattr(r, key) for r in references),
                   name=f"reference networks ({len(references)})",
                   colour=_STATE_COLOURS["reference"],
                   text=tuple(str(r.attrs.get("reference")) for r in references)),)


def cost_figure(records: Sequence[TrialRecord], settings: dict[str, Any]) -> Optional[Figure]:
    evaluated = searched(records)
    if not evaluated:
        return None
    metric = settings.get("metric", "flops")
    label = METRIC_LABELS.get(metric, metric)
    target = settings.get("target")
    vlines = ((float(target), f"target {format_count(target)}"),) if isinstance(
        target, (int, float)) else ()
    costs = tuple(r.cost for r in evaluated)
    text = tuple(f"trial {r.number}" for r in evaluated)
    front = pareto_front([(r.cost, r.accuracy, r.number) for r in evaluated])
    score = score_label(settings)
    accuracy = Panel(title=score, x_label=label, y_label=score, vlines=vlines, series=(
        Series(x=costs, y=tuple(r.accuracy for r in evaluated), name="trials",
               colour=_STATE_COLOURS["complete"], text=text),
        Series(x=tuple(p[0] for p in front), y=tuple(p[1] for p in front),
               name=f"Pareto front ({len(front)})", kind="lines", colour="#D55E00",
               text=tuple(f"trial {p[2]}" for p in front)),
        *_reference_series(records, "accuracy")))
    rewarded = [r for r in evaluated if r.reward is not None]
    panels = [accuracy]
    if rewarded:
        panels.append(Panel(title="reward", x_label=label, y_label="reward", vlines=vlines, series=(
            Series(x=tuple(r.cost for r in rewarded), y=tuple(r.reward for r in rewarded),
                   name="reward", colour="#009E73",
                   text=tuple(f"trial {r.number}" for r in rewarded)),
            *_reference_series(records, "reward"))))
    return Figure(key="cost", title=f"Accuracy and reward against {label}", panels=tuple(panels),
                  caption=f"Each evaluated trial at its {label} (deployment resolution). The "
                          "dashed line is the target T of the reward ACC \u00d7 (cost/T)^w "
                          "(MnasNet); the Pareto front joins the trials no other trial beats "
                          "on both accuracy and cost.")


def score_label(settings: dict[str, Any]) -> str:
    """What the trials' ``accuracy`` is: a validation accuracy for proxy training, a
    unitless score for the zero-cost proxies."""
    evaluator = settings.get("evaluator")
    return "accuracy" if evaluator is None or is_accuracy(evaluator) else f"{evaluator} score"


def _in_memory(study: optuna.Study, records: Sequence[TrialRecord], key: str) -> optuna.Study:
    """A study in memory holding each trial's parameters, values and ``key`` attribute
    alone: Optuna's own reads of a stored study load every trial, screened ones included,
    before they filter by state, and copying whole trials would copy their genomes."""
    storage = optuna.storages.InMemoryStorage()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        storage.create_new_study(study.directions, study_name=study.study_name)
    finally:
        optuna.logging.set_verbosity(verbosity)
    copy = optuna.Study(study_name=study.study_name, storage=storage)
    copy.add_trials([optuna.trial.create_trial(
        params=r.frozen.params, distributions=r.frozen.distributions, values=r.frozen.values,
        user_attrs={key: r.attrs[key]}) for r in records])
    return copy


def importances_figure(study: optuna.Study, records: Sequence[TrialRecord]
                       ) -> tuple[Optional[Figure], str]:
    """The figure, or ``None`` and why not."""
    evaluated = [r for r in searched(records) if r.frozen.params]
    if len(evaluated) < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (f"Stage-choice importances need at least {MIN_TRIALS_FOR_IMPORTANCE} "
                      f"evaluated trials; this study has {len(evaluated)}.")
    complete = [r for r in records if r.state in ("complete", "reused")]
    key = next((k for k in ("reward", "accuracy")
                if all(getattr(r, k) is not None for r in complete)), None)
    if key is None:
        return None, "Stage-choice importances: some complete trials have neither reward nor accuracy."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # PED-ANOVA explains what makes the target *low*, hence the minus.
            importances = optuna.importance.get_param_importances(
                _in_memory(study, complete, key),
                evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=lambda t: -t.user_attrs[key])
    except (ValueError, RuntimeError) as error:
        return None, f"Stage-choice importances could not be computed: {error}"
    if not importances:
        return None, "Stage-choice importances: no parameter varied between evaluated trials."
    names = sorted(importances, key=importances.get)
    top = names[-20:]  # the 20 most important of up to 35 choices keep the bars legible
    panel = Panel(title="PED-ANOVA importance", x_label=f"importance for a high {key}",
                  y_label="", series=(Series(x=tuple(importances[n] for n in top), y=tuple(top),
                                             name="importance", kind="barh", colour="#0072B2"),))
    return Figure(key="importances", title="Stage-choice importances", panels=(panel,),
                  height=max(360, 22 * len(top) + 120),
                  caption=f"Which per-stage choices mattered for a high {key}, by Optuna's "
                          f"PED-ANOVA over {len(evaluated)} evaluated trials (the top "
                          f"{len(top)} of {len(importances)}; importances sum to 1)."), ""


def states_figure(records: Sequence[TrialRecord], counts: dict[str, int],
                  screened: ScreenedCount) -> Figure:
    """``counts``: trials per state, screened (and prescreened) ones as "screened"."""
    present = [state for state in _STATE_COLOURS if counts.get(state)]
    count_panel = Panel(title="trials by state", x_label="state", y_label="trials", series=tuple(
        Series(x=(state,), y=(counts[state],), name=state, kind="bar",
               colour=_STATE_COLOURS[state], legend=False) for state in present))
    series = []
    durations = []
    for state in present:
        timed = [(r.number, r.duration_s) for r in records
                 if r.state == state and r.duration_s is not None]
        if timed:
            durations += [d for _, d in timed]
            series.append(Series(x=tuple(n for n, _ in timed), y=tuple(d for _, d in timed),
                                 name=state, colour=_STATE_COLOURS[state]))
    positive = [d for d in durations if d > 0]
    wide = bool(positive) and max(positive) / min(positive) > 100
    panels = [count_panel]
    if series:
        panels.append(Panel(title="trial durations", x_label="trial", y_label="seconds",
                            series=tuple(series), y_log=wide))
    total = sum(durations)
    unscreened = "" if not screened.total else (
        f" {screened.total:,} screened genomes were not trained ({screened.window:,} outside "
        f"the cost window, {screened.prescreened:,} below the prescreen's bar): counted here, "
        "not drawn.")
    return Figure(key="states", title="Trial states and durations", panels=tuple(panels),
                  caption=f"{sum(counts.values()):,} trials.{unscreened} Pruned trials were "
                          "stopped early by the pruner; over-budget ones were not evaluated, "
                          "as other workers had used the trial budget. Wall time of the other "
                          f"finished trials: {total:,.1f} s in all.")
