"""``nas report``: one self-contained HTML page about a study, plus PNG copies of its figures.

The page needs no network: plotly.js is embedded once, the best architecture's diagram is
inline SVG. Each figure is described once, as data (:mod:`nas.figures`), and drawn twice:
by plotly for the page and by matplotlib for the PNGs, so the two cannot disagree.

Figures: those of the study's trials (:mod:`nas.report_figures`: history, accuracy and
reward against cost, stage-choice importances, trial states) and, when the run folder
holds scaled families (``family.json`` written by ``nas scale``), multiply-adds,
parameters, activations and, when trained, accuracy against phi, as in Figure 1 of the
EfficientNet paper (Tan & Le 2019; :mod:`nas.report_families`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from optuna.trial import FrozenTrial

from space import Genome, GenomeError, NasError

from .common import format_count
from .diagram import genome_svg
from .figures import Figure, Panel, Series, plotly_figure, render_png
from .latency.figures import latency_figure
from .outputs import publish
from .protocol import is_accuracy
from .report_families import family_figures, find_families, member_accuracy
from .report_figures import (METRIC_LABELS, MIN_TRIALS_FOR_IMPORTANCE, cost_figure,
                             history_figure, importances_figure, pareto_front, score_label,
                             searched, states_figure)
from .run import StudyLocation, open_study
from .selection import select
from .storage import mask_url
from .study_view import count_screened, evaluated_trials
from .trial import STATES, TrialRecord
from .trial_notes import STAGE_HEADERS, stage_rows

__all__ = ["ReportError", "Series", "Panel", "Figure", "Report", "collect", "render_html",
           "render_png", "write_report", "pareto_front", "member_accuracy", "find_families",
           "MIN_TRIALS_FOR_IMPORTANCE"]


class ReportError(NasError):
    """A study with nothing to report, or an output that cannot be written."""


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
    # How the best was chosen and whether its lead is beyond noise (nas.selection), and
    # the reference networks' rows beside it.
    selection: tuple[str, ...] = ()
    references: tuple[tuple[str, ...], ...] = ()



# -- collecting ------------------------------------------------------------------------------------


def _counts(records: Sequence[TrialRecord], screened_total: int) -> dict[str, int]:
    """Trials per state (nas.trial.STATES), those present; screened and prescreened trials,
    counted rather than read (nas.study_view), are one "screened" entry."""
    counts = dict.fromkeys(STATES, 0)
    for record in records:
        counts[record.state] += 1
    counts["screened"] += screened_total
    del counts["prescreened"]
    return {state: n for state, n in counts.items() if n}


def collect(location: StudyLocation) -> Report:
    """Read the study and its run folder into a :class:`Report` (nothing is written)."""
    study = open_study(location)
    # Screened genomes are counted, not read: the report's time and memory follow the
    # evaluated trials alone (nas.study_view).
    records = [TrialRecord(trial) for trial in evaluated_trials(study)]
    screened = count_screened(study)
    if not records and not screened.total:
        raise ReportError(f"study {location.study_name!r} has no trials yet; run `nas search` "
                          "first (or wait for its first trial)")
    settings = dict(study.user_attrs)
    if "target" not in settings and "target_flops" in settings:
        settings["target"] = settings["target_flops"]
    counts = _counts(records, screened.total)
    notes = []
    importance, why = importances_figure(study, records)
    if why:
        notes.append(why)
    figures = [f for f in (history_figure(records, len(study.directions) > 1),
                           cost_figure(records, settings), importance,
                           states_figure(records, counts, screened),
                           *family_figures(find_families(location.run_dir)),
                           latency_figure(location.run_dir, settings)) if f]
    evaluated = [r for r in searched(records) if r.genome_dict is not None]
    resolution = int(settings.get("resolution") or 224)
    best = best_genome = None
    svg = ""
    # The best as best.json has it: by confirmed reward where the study holds confirmations.
    chosen = select(records, settings)
    if evaluated:
        best = chosen.best.record if chosen else max(
            evaluated, key=lambda r: r.reward if r.reward is not None else r.accuracy)
        try:
            best_genome = best.genome
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
                  best=best.frozen if best_genome is not None else None, best_genome=best_genome,
                  best_svg=svg, resolution=resolution,
                  selection=tuple(chosen.lines()) if chosen else (),
                  references=tuple(_reference_row(r) for r in records if r.state == "reference"))


def _reference_row(record: TrialRecord) -> tuple[str, ...]:
    def number(value: Optional[float], form: str) -> str:
        return "" if value is None else format(value, form)

    flops = record.costs()["flops"]
    return (str(record.attrs.get("reference")), str(record.number),
            str(record.attrs.get("evaluator", "")), number(record.accuracy, ".4f"),
            number(record.noise, ".4f"), number(record.reward, ".4f"),
            "" if flops is None else format_count(flops))


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
        rows.append(("target", f"{s['target']:,} {METRIC_LABELS.get(metric, metric)}"
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
    if is_accuracy(s.get("evaluator", "")):
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
        facts = [(score_label(report.settings), f"{attrs['accuracy']:.4f}")]
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
    if report.selection:
        parts.append("<h2>Is the best better? Its lead against the noise of the scores</h2>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>"
                                      for line in report.selection) + "</ul>")
    if report.references:
        parts.append("<h2>Reference networks (outside the search's budget)</h2>")
        parts.append(_table(("network", "trial", "evaluator", "score", "standard error",
                             "reward", "multiply-adds"), report.references, left=3))
    for figure in report.figures:
        parts.append(f"<h2>{html.escape(figure.title)}</h2>")
        parts.append(pio.to_html(plotly_figure(figure), include_plotlyjs=False, full_html=False,
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

