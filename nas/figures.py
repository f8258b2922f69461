"""Figures described once, as data (:class:`Figure` of :class:`Panel` s of :class:`Series`),
and drawn twice: by plotly for an HTML page (:func:`plotly_figure`) and by matplotlib for a
PNG (:func:`render_png`), so that the two cannot disagree. Used by ``nas report`` and the
latency figures."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional

__all__ = ["Series", "Panel", "Figure", "plotly_figure", "render_png"]


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


def plotly_figure(figure: Figure):
    """The figure as a plotly figure, one subplot per panel."""
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
