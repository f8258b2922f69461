"""A scaled family as files and text: what ``nas scale`` writes and prints, and what the
benchmarks write when they scale a genome the same way.

:func:`grow` scales a base genome (:func:`scaling.family`) and records what its costs are
for (:class:`CostContext`: the genome's own search context when it has one, else
ImageNet's 3 channels and 1000 classes); :func:`family_files` gives every file of the
family (``b<phi>.json``, ``family.json``, ``family.csv``, ``family.png``,
``family.html``) as bytes for :func:`nas.outputs.publish`; :func:`family_table` the
printed summary. The coefficient grid search's table and CSV are here too.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

from scaling import GridResult, Member, coefficient_warning, family
from space import Genome

from .common import format_count, format_table

__all__ = ["CostContext", "Family", "cost_context", "grow", "describe", "family_table",
           "family_files", "member_file", "grid_table", "grid_csv", "nan_on_failure"]

log = logging.getLogger(__name__)

# The papers' convention (ImageNet), used for a genome that records no search context.
IMAGENET_CLASSES, IMAGENET_CHANNELS = 1000, 3


@dataclass(frozen=True)
class CostContext:
    """The input channels and classes a family's costs are computed for, and why."""

    num_classes: int
    in_channels: int
    source: str  # "given", "search" (the genome's own) or "default" (ImageNet's)
    dataset: str = ""

    def describe(self) -> str:
        """How the table names its costs' context, e.g. "1 input channel(s), 10 classes
        (the genome's search context, fashion-mnist)"."""
        dataset = f", {self.dataset}" if self.dataset else ""
        where = {"given": "as asked",
                 "search": f"the genome's search context{dataset}",
                 "default": "ImageNet's, as the papers report; the genome records no search "
                            "context"}[self.source]
        return f"{self.in_channels} input channel(s), {self.num_classes} classes ({where})"


def cost_context(genome: Genome, num_classes: Optional[int] = None,
                 in_channels: Optional[int] = None) -> CostContext:
    """What to cost ``genome``'s family for: values given win, then the genome's own
    search context (a searched ``best.json`` records its dataset's channels and
    classes), then ImageNet's 3 channels and 1000 classes."""
    context = genome.context
    if num_classes is not None or in_channels is not None:
        fallback = (context.num_classes, context.in_channels) if context else \
            (IMAGENET_CLASSES, IMAGENET_CHANNELS)
        return CostContext(num_classes if num_classes is not None else fallback[0],
                           in_channels if in_channels is not None else fallback[1], "given")
    if context is not None:
        return CostContext(context.num_classes, context.in_channels, "search", context.dataset)
    return CostContext(IMAGENET_CLASSES, IMAGENET_CHANNELS, "default")


@dataclass(frozen=True)
class Family:
    """A base genome's members for one method and its coefficients, costed for ``context``."""

    base: Genome
    method: str
    coefficients: dict[str, float]
    members: tuple[Member, ...]
    context: CostContext

    @property
    def title(self) -> str:
        return f"{self.base.name or 'genome'}: {describe(self.method, self.coefficients)}"


def grow(genome: Genome, phis: Iterable[float], method: str = "compound",
         coefficients: Optional[dict[str, float]] = None,
         context: Optional[CostContext] = None) -> Family:
    """Scale ``genome`` to the members ``phis`` (:func:`scaling.family`), costed for
    ``context`` (default: :func:`cost_context` of the genome)."""
    coefficients = dict(coefficients or {})
    context = context or cost_context(genome)
    members = family(genome, phis, method, **coefficients, num_classes=context.num_classes,
                     in_channels=context.in_channels)
    return Family(base=genome, method=method, coefficients=coefficients,
                  members=tuple(members), context=context)


def describe(method: str, coefficients: dict[str, float]) -> str:
    """One phrase for a scaling method and its coefficients."""
    if method == "compound":
        a, b, g = coefficients["alpha"], coefficients["beta"], coefficients["gamma"]
        return (f"compound scaling, alpha {a:g}, beta {b:g}, gamma {g:g} "
                f"(alpha*beta^2*gamma^2 = {a * b * b * g * g:.3f})")
    if method == "fast":
        return f"fast compound scaling, a = {coefficients['alpha']:g} (multiply-adds x2 per phi)"
    if method == "official":
        return "the official EfficientNet B0-B7 table"
    return f"{method} alone (multiply-adds x2 per phi)"


def family_table(grown: Family) -> str:
    """The summary ``nas scale`` prints: what was scaled how, a coefficient warning if
    any, and one row per member with its multipliers and costs."""
    lines = [f"{grown.base.name or 'genome'} scaled with "
             f"{describe(grown.method, grown.coefficients)}; costs per image at each "
             f"member's resolution, {grown.context.describe()}"]
    if grown.method == "compound":
        warning = coefficient_warning(**grown.coefficients)
        if warning:
            lines.append(f"warning: {warning}")
    lines.append(format_table(
        ["phi", "name", "resolution", "depth", "width", "res", "multiply-adds", "params",
         "activations", "vs b0"],
        [[m.phi, m.name, m.resolution, f"{m.depth_multiplier:.3f}",
          f"{m.width_multiplier:.3f}", f"{m.resolution_multiplier:.3f}",
          format_count(m.cost.flops), format_count(m.cost.params),
          format_count(m.cost.activations), f"{m.flops_ratio:.2f}x"] for m in grown.members]))
    return "\n".join(lines)


def member_file(member: Member) -> str:
    return f"b{member.phi:g}.json"


def family_files(grown: Family) -> dict[str, bytes]:
    """Every file of the family by name: the members' genomes, family.json and .csv (one
    row per member) and the cost plots family.png and family.html."""
    files = {member_file(m): (m.genome.to_json() + "\n").encode() for m in grown.members}
    rows = [{"phi": m.phi, "name": m.name, "file": member_file(m),
             "depth_multiplier": m.depth_multiplier, "width_multiplier": m.width_multiplier,
             "resolution_multiplier": m.resolution_multiplier, "resolution": m.resolution,
             "flops": m.cost.flops, "params": m.cost.params,
             "activations": m.cost.activations, "flops_ratio": m.flops_ratio}
            for m in grown.members]
    summary = {"method": grown.method, "coefficients": grown.coefficients,
               "base": grown.base.to_dict(), "num_classes": grown.context.num_classes,
               "in_channels": grown.context.in_channels,
               "costs_for": grown.context.describe(), "members": rows}
    files["family.json"] = (json.dumps(summary, indent=2) + "\n").encode()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files["family.csv"] = buffer.getvalue().encode()
    files["family.png"] = _plot_png(grown.members, grown.title)
    files["family.html"] = _plot_html(grown.members, grown.title).encode()
    return files


# -- the coefficient grid search ----------------------------------------------------------


def nan_on_failure(evaluator) -> Callable[[Genome], float]:
    """``evaluator.evaluate`` for :func:`scaling.grid_search`: a genome whose evaluation
    fails scores NaN (which never wins) instead of ending the search."""
    from .evaluators import EvaluationFailed  # pulls in torch and the data code

    def evaluate(genome: Genome) -> float:
        try:
            return evaluator.evaluate(genome)
        except EvaluationFailed as error:
            log.warning("%s: evaluation failed (%s); scored NaN", genome.name, error.reason)
            return math.nan

    return evaluate


def grid_table(result: GridResult, evaluator: str, tolerance: float) -> str:
    """The grid search's rows, the chosen triple marked, as ``nas scale --grid`` prints."""
    best = result.best
    return "\n".join([
        f"grid search at phi = 1 with the {evaluator} evaluator: {len(result.rows)} "
        f"triples with alpha*beta^2*gamma^2 within {tolerance:.0%} of 2",
        format_table(["alpha", "beta", "gamma", "a*b^2*g^2", "multiply-adds", "score", ""],
                     [[f"{row.alpha:g}", f"{row.beta:g}", f"{row.gamma:g}",
                       f"{row.product:.3f}", format_count(row.flops), f"{row.score:.4f}",
                       "<- chosen" if row == best else ""] for row in result.rows]),
        f"chosen: alpha {best.alpha:g}, beta {best.beta:g}, gamma {best.gamma:g} "
        f"(alpha*beta^2*gamma^2 = {best.product:.3f}, score {best.score:.4f})\n"])


def grid_csv(result: GridResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["alpha", "beta", "gamma", "product", "flops", "score", "chosen"])
    for row in result.rows:
        writer.writerow([row.alpha, row.beta, row.gamma, f"{row.product:.6f}", row.flops,
                         row.score, int(row == result.best)])
    return buffer.getvalue()


# -- plots of a family's costs against phi ---------------------------------------------
_SERIES = (("multiply-adds", lambda m: m.cost.flops), ("parameters", lambda m: m.cost.params),
           ("activations", lambda m: m.cost.activations))


def _doubling(members: Sequence[Member]) -> list[float]:
    """2^phi times the phi = 0 member's multiply-adds, at every member's phi."""
    base = members[0].cost.flops / members[0].flops_ratio
    return [base * 2 ** m.phi for m in members]


def _plot_png(members: Sequence[Member], title: str) -> bytes:
    # The Figure API without pyplot: no global figure state, no display backend needed.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.2), layout="constrained")
    phis = [m.phi for m in members]
    for axis, (label, value) in zip(figure.subplots(1, 3), _SERIES):
        axis.plot(phis, [value(m) for m in members], marker="o", label=label)
        if label == "multiply-adds":
            axis.plot(phis, _doubling(members), linestyle="--", color="grey",
                      label="2^phi x B0")
            axis.legend()
        axis.set_yscale("log")
        axis.set_xlabel("phi")
        axis.set_title(label)
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _plot_html(members: Sequence[Member], title: str) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=3, subplot_titles=[label for label, _ in _SERIES])
    phis = [m.phi for m in members]
    names = [f"{m.name} ({m.resolution}px)" for m in members]
    for column, (label, value) in enumerate(_SERIES, start=1):
        figure.add_trace(go.Scatter(x=phis, y=[value(m) for m in members], mode="lines+markers",
                                    name=label, text=names,
                                    hovertemplate="%{text}<br>phi %{x}<br>%{y:,}<extra>"
                                                  f"{label}</extra>"), row=1, col=column)
        figure.update_yaxes(type="log", row=1, col=column)
        figure.update_xaxes(title_text="phi", row=1, col=column)
    figure.add_trace(go.Scatter(x=phis, y=_doubling(members), mode="lines",
                                name="2^phi x B0", line={"dash": "dash", "color": "grey"}),
                     row=1, col=1)
    figure.update_layout(title_text=title, height=460)
    # include_plotlyjs=True embeds plotly.js, so the file opens offline.
    return figure.to_html(include_plotlyjs=True, full_html=True)
