"""``nas report``: one self-contained HTML page about a study, plus PNG copies of its figures.

The page needs no network: plotly.js is embedded once, the best architecture's diagram is
inline SVG. Each figure is described once, as data (:class:`Figure` of :class:`Panel` s of
:class:`Series`), and drawn twice: by plotly for the page and by matplotlib for the PNGs, so
the two cannot disagree.

Figures: the optimization history with the best so far; accuracy and reward against the
search's cost metric (multiply-adds by default) with the target and the Pareto front; the
stage-choice importances (Optuna's PED-ANOVA, which needs no extra package); trial states
and durations; and, when the run folder holds scaled families (``family.json`` written by
``nas scale``), multiply-adds, parameters, activations and, when trained, accuracy against
phi, as in Figure 1 of the EfficientNet paper (Tan & Le 2019).
"""

from __future__ import annotations

import html
import io
import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from space import Genome, GenomeError, NasError

from .common import format_count
from .run import StudyLocation, open_study
from .trial_notes import STAGE_HEADERS, stage_rows
from .diagram import genome_svg
from .latency.figures import latency_figure
from .outputs import publish
from .storage import mask_url
from .study_view import ScreenedCount, count_screened, evaluated_trials

__all__ = ["ReportError", "Series", "Panel", "Figure", "Report", "collect", "render_html",
           "render_png", "write_report", "pareto_front", "member_accuracy", "find_families",
           "MIN_TRIALS_FOR_IMPORTANCE"]

log = logging.getLogger(__name__)

# PED-ANOVA compares the best 10% of trials with all of them; with fewer than this many
# evaluated trials its top group has one trial and Optuna returns equal importances.
MIN_TRIALS_FOR_IMPORTANCE = 10

_METRIC_LABELS = {"flops": "multiply-adds", "params": "parameters", "activations": "activations",
                  "latency": "latency (s)"}
_STATE_COLOURS = {"complete": "#0072B2", "screened": "#999999", "pruned": "#E69F00",
                  "failed": "#D55E00", "running": "#009E73", "waiting": "#CC79A7"}


class ReportError(NasError):
    """A study with nothing to report, or an output that cannot be written."""


# -- figures as data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One trace. ``kind``: ``markers``, ``lines``, ``steps`` (a best-so-far staircase),
    ``bar`` (categorical x) or ``barh`` (categorical y). ``text`` is hover text per point."""

    x: tuple
    y: tuple
    name: str
    kind: str = "markers"
    colour: Optional[str] = None
    text: tuple = ()
    legend: bool = True  # False where the axis already names it (bars per state)


@dataclass(frozen=True)
class Panel:
    """One set of axes; ``vlines`` are (x, label) reference lines (the target)."""

    title: str
    x_label: str
    y_label: str
    series: tuple[Series, ...]
    x_log: bool = False
    y_log: bool = False
    vlines: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class Figure:
    """A row of panels; ``key`` names the PNG file; ``caption`` says how to read it."""

    key: str
    title: str
    panels: tuple[Panel, ...]
    caption: str = ""
    height: int = 420


@dataclass(frozen=True)
class Report:
    """Everything the page shows, collected from the storage and the run folder."""

    study_name: str
    storage: str
    settings: dict[str, Any]
    counts: dict[str, int]
    figures: tuple[Figure, ...]
    notes: tuple[str, ...]
    best: Optional[FrozenTrial] = None
    best_genome: Optional[Genome] = None
    best_svg: str = ""
    resolution: int = 224


# -- reading the study -----------------------------------------------------------------------------


def _state(trial: FrozenTrial) -> str:
    if trial.state == TrialState.COMPLETE:
        return "complete"
    if trial.state == TrialState.PRUNED:  # by the pruner: screened trials are counted apart
        return "pruned"
    if trial.state == TrialState.FAIL:
        return "failed"
    return "running" if trial.state == TrialState.RUNNING else "waiting"


def _evaluated(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE
            and isinstance(t.user_attrs.get("accuracy"), (int, float))
            and isinstance(t.user_attrs.get("cost"), (int, float))]


def pareto_front(points: Sequence[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """The (cost, accuracy, trial) points no other point beats on both (lower cost, higher
    accuracy), by increasing cost."""
    front: list[tuple[float, float, int]] = []
    for point in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or point[1] > front[-1][1]:
            front.append(point)
    return front


def _history(trials: Sequence[FrozenTrial], multi: bool) -> Optional[Figure]:
    key = "accuracy" if multi else "reward"
    evaluated = [t for t in _evaluated(trials) if isinstance(t.user_attrs.get(key), (int, float))]
    if not evaluated:
        return None
    values = [t.user_attrs[key] for t in evaluated]
    numbers = [t.number for t in evaluated]
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


def _cost_figure(trials: Sequence[FrozenTrial], settings: dict[str, Any]) -> Optional[Figure]:
    evaluated = _evaluated(trials)
    if not evaluated:
        return None
    metric = settings.get("metric", "flops")
    label = _METRIC_LABELS.get(metric, metric)
    target = settings.get("target")
    vlines = ((float(target), f"target {format_count(target)}"),) if isinstance(
        target, (int, float)) else ()
    costs = tuple(t.user_attrs["cost"] for t in evaluated)
    text = tuple(f"trial {t.number}" for t in evaluated)
    front = pareto_front([(t.user_attrs["cost"], t.user_attrs["accuracy"], t.number)
                          for t in evaluated])
    score = _score_label(settings)
    accuracy = Panel(title=score, x_label=label, y_label=score, vlines=vlines, series=(
        Series(x=costs, y=tuple(t.user_attrs["accuracy"] for t in evaluated), name="trials",
               colour=_STATE_COLOURS["complete"], text=text),
        Series(x=tuple(p[0] for p in front), y=tuple(p[1] for p in front),
               name=f"Pareto front ({len(front)})", kind="lines", colour="#D55E00",
               text=tuple(f"trial {p[2]}" for p in front))))
    rewarded = [t for t in evaluated if isinstance(t.user_attrs.get("reward"), (int, float))]
    panels = [accuracy]
    if rewarded:
        panels.append(Panel(title="reward", x_label=label, y_label="reward", vlines=vlines, series=(
            Series(x=tuple(t.user_attrs["cost"] for t in rewarded),
                   y=tuple(t.user_attrs["reward"] for t in rewarded), name="reward",
                   colour="#009E73", text=tuple(f"trial {t.number}" for t in rewarded)),)))
    return Figure(key="cost", title=f"Accuracy and reward against {label}", panels=tuple(panels),
                  caption=f"Each evaluated trial at its {label} (deployment resolution). The "
                          "dashed line is the target T of the reward ACC \u00d7 (cost/T)^w "
                          "(MnasNet); the Pareto front joins the trials no other trial beats "
                          "on both accuracy and cost.")


def _score_label(settings: dict[str, Any]) -> str:
    """What the trials' ``accuracy`` is: a validation accuracy for proxy training, a
    unitless score for the zero-cost proxies."""
    evaluator = settings.get("evaluator")
    return "accuracy" if evaluator in (None, "proxy-train") else f"{evaluator} score"


def _in_memory(study: optuna.Study, trials: Sequence[FrozenTrial], key: str) -> optuna.Study:
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
        params=t.params, distributions=t.distributions, values=t.values,
        user_attrs={key: t.user_attrs[key]}) for t in trials])
    return copy


def _importances(study: optuna.Study, trials: Sequence[FrozenTrial]) -> tuple[Optional[Figure], str]:
    evaluated = [t for t in _evaluated(trials) if t.params]
    if len(evaluated) < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (f"Stage-choice importances need at least {MIN_TRIALS_FOR_IMPORTANCE} "
                      f"evaluated trials; this study has {len(evaluated)}.")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    key = next((k for k in ("reward", "accuracy")
                if all(isinstance(t.user_attrs.get(k), (int, float)) for t in complete)), None)
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


def _states_figure(trials: Sequence[FrozenTrial], counts: dict[str, int],
                   screened: ScreenedCount) -> Figure:
    present = [state for state in _STATE_COLOURS if counts.get(state)]
    count_panel = Panel(title="trials by state", x_label="state", y_label="trials", series=tuple(
        Series(x=(state,), y=(counts[state],), name=state, kind="bar",
               colour=_STATE_COLOURS[state], legend=False) for state in present))
    series = []
    durations = []
    for state in present:
        timed = [(t.number, (t.datetime_complete - t.datetime_start).total_seconds())
                 for t in trials if _state(t) == state and t.datetime_start and t.datetime_complete]
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
                          "stopped early by the pruner. Wall time of the other finished "
                          f"trials: {total:,.1f} s in all.")


# -- scaled families ---------------------------------------------------------------------------------


def _read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    # ValueError: bad JSON, bad UTF-8, or an integer of more than 4,300 digits
    except (OSError, ValueError, RecursionError) as error:
        log.warning("ignoring %s: %s", path, error)
        return None


def member_accuracy(metrics: Any) -> Optional[float]:
    """A trained member's accuracy from its ``metrics.json`` (written by ``nas train``):
    the test accuracy if there is one, else the validation accuracy; in [0, 1]."""
    if not isinstance(metrics, dict):
        return None
    for key in ("test_accuracy", "test", "val_accuracy", "validation_accuracy", "val",
                "validation", "accuracy"):
        value = metrics.get(key)
        if isinstance(value, dict):
            value = value.get("accuracy")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
    return None


def _member_metrics(folder: Path, member: dict) -> Optional[float]:
    names = [str(member.get("name", "")), Path(str(member.get("file", ""))).stem,
             f"b{member.get('phi')}"]
    for name in dict.fromkeys(n for n in names if n and "/" not in n and n not in (".", "..")):
        path = folder / name / "metrics.json"
        if path.is_file():
            return member_accuracy(_read_json(path))
    return None


def find_families(run_dir: Optional[Path]) -> list[tuple[str, Path, dict]]:
    """``family.json`` files in the run folder and its direct subfolders, as (label, folder,
    content); a file that is not a family (no ``members`` list) is skipped with a warning."""
    if run_dir is None:
        return []
    paths = [run_dir / "family.json"] + sorted(run_dir.glob("*/family.json"))
    families = []
    for path in paths:
        if not path.is_file():
            continue
        data = _read_json(path)
        members = data.get("members") if isinstance(data, dict) else None
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            log.warning("ignoring %s: it has no list of members", path)
            continue
        usable = [m for m in members if all(isinstance(m.get(k), (int, float)) for k in
                                            ("phi", "flops", "params", "activations"))]
        if not usable:
            continue
        label = path.parent.name if path.parent != run_dir else "family"
        method = data.get("method")
        if isinstance(method, str) and method != label:
            label = f"{label} ({method})"
        families.append((label,
                         path.parent, {**data, "members": sorted(usable, key=lambda m: m["phi"])}))
    return families


_FAMILY_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def _family_figures(families: Sequence[tuple[str, Path, dict]]) -> list[Figure]:
    if not families:
        return []
    colours = {label: _FAMILY_COLOURS[i % len(_FAMILY_COLOURS)]
               for i, (label, _, _) in enumerate(families)}
    panels = []
    for title, key in (("multiply-adds", "flops"), ("parameters", "params"),
                       ("activations", "activations")):
        panels.append(Panel(title=title, x_label="phi", y_label=title, y_log=True, series=tuple(
            Series(x=tuple(m["phi"] for m in data["members"]),
                   y=tuple(m[key] for m in data["members"]), name=label, kind="lines",
                   colour=colours[label], text=tuple(str(m.get("name", "")) for m in data["members"]))
            for label, _, data in families)))
    trained = []
    for label, folder, data in families:
        points = [(m["phi"], m["params"], accuracy, str(m.get("name", ""))) for m in data["members"]
                  if (accuracy := _member_metrics(folder, m)) is not None]
        if points:
            trained.append((label, points))
    note = ("" if trained else " No member has a metrics.json yet: train them with "
            "`nas train --genome <member>.json --out <family folder>/<member name>` to add "
            "accuracy.")
    figures = [Figure(key="family", title="Scaled families: cost against phi", panels=tuple(panels),
                      caption="Cost of each member against the scaling exponent phi (log scale). "
                              "Compound scaling aims at 2^phi times the base multiply-adds; "
                              "fast scaling (Dollar et al. 2021) keeps activations lower for "
                              "the same multiply-adds." + note)]
    if trained:
        figures.append(Figure(key="family-accuracy", title="Scaled families: accuracy", panels=(
            Panel(title="accuracy against phi", x_label="phi", y_label="accuracy", series=tuple(
                Series(x=tuple(p[0] for p in points), y=tuple(p[2] for p in points), name=label,
                       kind="lines", colour=colours[label], text=tuple(p[3] for p in points))
                for label, points in trained)),
            Panel(title="accuracy against parameters", x_label="parameters", y_label="accuracy",
                  x_log=True, series=tuple(
                      Series(x=tuple(p[1] for p in points), y=tuple(p[2] for p in points),
                             name=label, kind="lines", colour=colours[label],
                             text=tuple(p[3] for p in points))
                      for label, points in trained))),
            caption="Trained members (their metrics.json: test accuracy, else validation "
                    "accuracy). The right panel is drawn like Figure 1 of the EfficientNet "
                    "paper: accuracy against model size."))
    return figures


# -- collecting ------------------------------------------------------------------------------------


def collect(location: StudyLocation) -> Report:
    """Read the study and its run folder into a :class:`Report` (nothing is written)."""
    study = open_study(location)
    # Screened genomes are counted, not read: the report's time and memory follow the
    # evaluated trials alone (nas.study_view).
    trials = evaluated_trials(study)
    screened = count_screened(study)
    if not trials and not screened.total:
        raise ReportError(f"study {location.study_name!r} has no trials yet; run `nas search` "
                          "first (or wait for its first trial)")
    settings = dict(study.user_attrs)
    if "target" not in settings and "target_flops" in settings:
        settings["target"] = settings["target_flops"]
    multi = len(study.directions) > 1
    counts: dict[str, int] = {}
    for trial in trials:
        counts[_state(trial)] = counts.get(_state(trial), 0) + 1
    if screened.total:
        counts["screened"] = screened.total
    notes = []
    importance, why = _importances(study, trials)
    if why:
        notes.append(why)
    families = find_families(location.run_dir)
    figures = [f for f in (_history(trials, multi), _cost_figure(trials, settings), importance,
                           _states_figure(trials, counts, screened),
                           *_family_figures(families),
                           latency_figure(location.run_dir, settings)) if f]
    evaluated = [t for t in _evaluated(trials) if isinstance(t.user_attrs.get("genome"), dict)]
    resolution = int(settings.get("resolution") or 224)
    best = best_genome = None
    svg = ""
    if evaluated:
        best = max(evaluated, key=lambda t: t.user_attrs.get("reward", t.user_attrs["accuracy"]))
        try:
            best_genome = Genome.from_dict(best.user_attrs["genome"])
        except GenomeError as error:
            notes.append(f"The best trial's genome cannot be read: {error}")
            best = None
    if best_genome is not None:
        svg = genome_svg(best_genome, resolution=resolution,
                         num_classes=int(settings.get("num_classes", 1000)),
                         in_channels=int(settings.get("in_channels", 3)),
                         title=f"best: trial {best.number}")
    else:
        notes.append("No trial has been evaluated yet, so there is no best architecture.")
    return Report(study_name=location.study_name, storage=mask_url(location.storage_url),
                  settings=settings, counts=counts, figures=tuple(figures), notes=tuple(notes),
                  best=best, best_genome=best_genome, best_svg=svg, resolution=resolution)


# -- drawing -----------------------------------------------------------------------------------------


def _plotly_figure(figure: Figure):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    plot = make_subplots(rows=1, cols=len(figure.panels),
                         subplot_titles=[p.title for p in figure.panels])
    for column, panel in enumerate(figure.panels, start=1):
        for series in panel.series:
            style = {"color": series.colour} if series.colour else {}
            common = dict(name=series.name, legendgroup=series.name,
                          text=list(series.text) or None, showlegend=series.legend)
            if series.kind == "bar":
                trace = go.Bar(x=list(series.x), y=list(series.y), marker=style, **common)
            elif series.kind == "barh":
                trace = go.Bar(x=list(series.x), y=list(series.y), orientation="h", marker=style,
                               **common)
            elif series.kind == "markers":
                trace = go.Scatter(x=list(series.x), y=list(series.y), mode="markers",
                                   marker={**style, "size": 7, "opacity": 0.8}, **common)
            else:
                trace = go.Scatter(x=list(series.x), y=list(series.y), mode="lines+markers"
                                   if series.kind == "lines" else "lines",
                                   line={**style, "shape": "hv" if series.kind == "steps"
                                         else "linear"}, **common)
            plot.add_trace(trace, row=1, col=column)
        for x, label in panel.vlines:
            plot.add_vline(x=x, line_dash="dash", line_color="#444", annotation_text=label,
                           annotation_position="bottom right", row=1, col=column)
        plot.update_xaxes(title_text=panel.x_label, type="log" if panel.x_log else None,
                          row=1, col=column)
        plot.update_yaxes(title_text=panel.y_label, type="log" if panel.y_log else None,
                          row=1, col=column)
    # The page's heading names the figure; the PNG, which stands alone, carries the title.
    plot.update_layout(height=figure.height, template="plotly_white", margin={"t": 60},
                       showlegend=True)
    return plot


def render_png(figure: Figure) -> bytes:
    """The figure as a PNG (matplotlib's Figure API: no global state, no display)."""
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.ticker import EngFormatter, MaxNLocator

    count = len(figure.panels)
    wide = 4.6 if count > 2 else 6.0
    chart = MplFigure(figsize=(max(6.5, wide * count), figure.height / 100), layout="constrained")
    axes = chart.subplots(1, count, squeeze=False)[0]
    for axis, panel in zip(axes, figure.panels):
        for series in panel.series:
            kw = {"color": series.colour} if series.colour else {}
            label = series.name if series.legend else None
            if series.kind == "bar":
                axis.bar([str(x) for x in series.x], series.y, label=label, **kw)
            elif series.kind == "barh":
                axis.barh([str(y) for y in series.y], series.x, label=label, **kw)
                axis.tick_params(axis="y", labelsize=8)
            elif series.kind == "markers":
                axis.scatter(series.x, series.y, s=16, alpha=0.8, label=label, **kw)
            elif series.kind == "steps":
                axis.step(series.x, series.y, where="post", label=label, **kw)
            else:
                axis.plot(series.x, series.y, marker="o", markersize=4, label=label, **kw)
        for x, label in panel.vlines:
            axis.axvline(x, linestyle="--", color="#444", label=label)
        axis.set_title(panel.title)
        axis.set_xlabel(panel.x_label)
        axis.set_ylabel(panel.y_label)
        if panel.x_log:
            axis.set_xscale("log")
        if panel.y_log:
            axis.set_yscale("log")
        for values, scale in ((panel.series[0].x if panel.series else (), axis.xaxis),
                              (panel.series[0].y if panel.series else (), axis.yaxis)):
            # 2.5e8 reads as "250M", as everywhere else in the tool, not as "2.5" and "1e8".
            if not values or not all(isinstance(v, (int, float)) for v in values):
                continue
            if max(abs(v) for v in values) >= 1e4:
                scale.set_major_formatter(EngFormatter(sep=""))
                scale.set_minor_formatter(EngFormatter(sep=""))
            elif all(isinstance(v, int) for v in values):
                scale.set_major_locator(MaxNLocator(integer=True))
        axis.grid(True, alpha=0.3)
        if any(s.legend and s.kind != "barh" for s in panel.series):
            axis.legend(fontsize=8)
    chart.suptitle(figure.title)
    buffer = io.BytesIO()
    chart.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1200px; color: #222; padding: 0 16px; }
h1 { margin-bottom: 4px; } .sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.best { display: flex; gap: 24px; align-items: flex-start; } .best > div { min-width: 0; }
.caption { color: #444; font-size: 14px; margin: 0 0 28px; max-width: 900px; }
.note { background: #fff8e1; border-left: 4px solid #E69F00; padding: 6px 10px; }
"""


def _settings_rows(report: Report) -> list[tuple[str, str]]:
    s = report.settings
    rows = []
    metric = s.get("metric", "flops")
    if "target" in s:
        rows.append(("target", f"{s['target']:,} {_METRIC_LABELS.get(metric, metric)}"
                     if isinstance(s["target"], int) else str(s["target"])))
    for key, label in (("alpha", "reward exponent alpha (under target)"),
                       ("beta", "reward exponent beta (over target)"), ("objective", "objective"),
                       ("dataset", "dataset"), ("evaluator", "evaluator"),
                       ("resolution", "deployment resolution (px)"),
                       ("proxy_resolution", "proxy resolution (px)"),
                       ("num_classes", "classes"), ("in_channels", "input channels"),
                       ("latency_table_path", "latency table"),
                       ("latency_table_fingerprint", "latency measured with")):
        if key in s:
            rows.append((label, str(s[key])))
    if s.get("evaluator") == "proxy-train":
        for key, label in (("proxy_subset", "proxy training images"),
                           ("proxy_epochs", "proxy epochs"),
                           ("proxy_val_size", "proxy validation images")):
            if key in s:
                rows.append((label, f"{s[key]:,}"))
    rows.append(("storage", report.storage))
    return rows


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    def cell(tag: str, index: int, text: str) -> str:
        klass = ' class="l"' if index < left else ""
        return f"<{tag}{klass}>{html.escape(str(text))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    """The self-contained page: plotly.js embedded once, one div per figure."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    counts = ", ".join(f"{n} {state}" for state, n in report.counts.items())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>NAS report: {html.escape(report.study_name)}</title>",
        f"<style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>Study {html.escape(report.study_name)}</h1>",
        f'<p class="sub">{html.escape(counts)}</p>',
        _table(("setting", "value"), _settings_rows(report)),
    ]
    for note in report.notes:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    if report.best is not None and report.best_genome is not None:
        attrs = report.best.user_attrs
        genome = report.best_genome
        parts.append(f"<h2>Best architecture: trial {report.best.number}</h2>")
        facts = [(_score_label(report.settings), f"{attrs['accuracy']:.4f}")]
        if isinstance(attrs.get("reward"), (int, float)):
            facts.append(("reward", f"{attrs['reward']:.4f}"))
        for key, label in (("flops", "multiply-adds"), ("params", "parameters"),
                           ("activations", "activations")):
            if isinstance(attrs.get(key), (int, float)):
                facts.append((label, f"{attrs[key]:,} ({format_count(attrs[key])})"))
        if "reused_from" in attrs:
            facts.append(("result reused from", f"trial {attrs['reused_from']}"))
        table = _table(STAGE_HEADERS, stage_rows(genome, report.resolution), left=2)
        parts.append(f'<div class="best"><div>{report.best_svg}</div><div>'
                     f'{_table(("", "at " + str(report.resolution) + " px"), facts)}{table}'
                     f"<details><summary>genome JSON</summary><pre>"
                     f"{html.escape(genome.to_json())}</pre></details></div></div>")
    for figure in report.figures:
        parts.append(f"<h2>{html.escape(figure.title)}</h2>")
        parts.append(pio.to_html(_plotly_figure(figure), include_plotlyjs=False, full_html=False,
                                 div_id=f"figure-{figure.key}",
                                 config={"displaylogo": False, "responsive": True}))
        parts.append(f'<p class="caption">{html.escape(figure.caption)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(report: Report, out: Path) -> list[Path]:
    """Write the page to ``out`` and the PNGs (and the best architecture's SVG) to
    ``<out stem>-figures/``, all of them or none (:func:`nas.outputs.publish`), once all
    are drawn. Returns the paths written, the page first."""
    figures_dir = out.with_name(out.stem + "-figures")
    files: dict[Path, bytes] = {out: render_html(report).encode("utf-8")}
    for figure in report.figures:
        files[figures_dir / f"{figure.key}.png"] = render_png(figure)
    if report.best_svg:
        files[figures_dir / "best-architecture.svg"] = report.best_svg.encode("utf-8")
    return publish(files)  # the page and its figures together, or none of them

