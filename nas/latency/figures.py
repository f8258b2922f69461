"""The report's latency figure: predicted against measured latency, for the whole networks
the table's overhead was fitted on and for the search's best trials measured at its end.
Read from the files alone (no torch: the report does not time anything)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from space import Genome, NasError, units

from ..run import RunFolder

__all__ = ["latency_figure"]


def _read(path: Path) -> Optional[dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _fit_points(table: dict) -> list[tuple[float, float, str]]:
    """(measured ms, predicted ms, label) of the table's whole networks."""
    try:
        entries, overhead = table["entries"], table["overhead"]
        points = []
        for index, network in enumerate(table["networks"]):
            genome = Genome.from_dict(network["genome"])
            keys = [unit.key for unit in units(genome, network["resolution"],
                                               network["num_classes"], network["in_channels"])]
            if all(key in entries for key in keys):
                total = sum(entries[key]["seconds"] for key in keys)
                predicted = overhead["scale"] * total + overhead["offset"]
                points.append((1e3 * network["seconds"], 1e3 * predicted,
                               genome.name or f"network {index}"))
        return points
    except (KeyError, TypeError, ValueError, NasError):
        return []


def latency_figure(run_dir: Optional[Path], settings: dict[str, Any]):
    """A :class:`nas.figures.Figure`, or None for a study not searched on latency."""
    from ..figures import Figure, Panel, Series

    if settings.get("metric") != "latency":
        return None
    table = _read(Path(settings.get("latency_table_path", ""))) if settings.get(
        "latency_table_path") else None
    fitted = _fit_points(table) if table else []
    measured = _read(RunFolder(run_dir).latency_json) if run_dir else None
    trials = [(1e3 * row["measured_s"], 1e3 * row["predicted_s"], f"trial {row['trial']}")
              for row in (measured or {}).get("trials", [])
              if isinstance(row, dict) and {"measured_s", "predicted_s", "trial"} <= set(row)]
    if not fitted and not trials:
        return None
    series = []
    for points, name, colour in ((fitted, "networks the overhead was fitted on", "#999999"),
                                 (trials, "best trials, measured at the end", "#D55E00")):
        if points:
            series.append(Series(x=tuple(p[0] for p in points), y=tuple(p[1] for p in points),
                                 name=name, colour=colour, text=tuple(p[2] for p in points)))
    every = [value for points in (fitted, trials) for p in points for value in p[:2]]
    span = (min(every), max(every))
    series.append(Series(x=span, y=span, name="predicted = measured", kind="lines",
                         colour="#0072B2"))
    panel = Panel(title="latency table: predicted against measured", x_label="measured (ms)",
                  y_label="predicted (ms)", series=tuple(series))
    where = (table or {}).get("fingerprint", {})
    return Figure(key="latency", title="Predicted against measured latency", panels=(panel,),
                  caption=f"Whole networks timed on {where.get('cpu', 'the table machine')} "
                          f"({where.get('backend', '?')}, {where.get('threads', '?')} "
                          "thread(s), batch 1): each point's prediction is the sum of its "
                          "units' table entries plus the fitted per-network overhead; points "
                          "on the line are predicted exactly.")
