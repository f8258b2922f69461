"""A latency table at work: pricing the genomes of a search, measuring its best ones for
real at the end, and choosing the scaling step that meets a latency budget."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from space import Genome, SearchSpace, SpaceError

from ..common import UsageError, atomic_write_json, format_count, format_table
from ..run import RunFolder
from ..trial import DIGEST, TrialRecord
from .build import Network, measure_networks, measure_units
from .measure import TimingSettings
from .predict import Predictor, space_units
from .table import LatencyTable, TableError, default_table_path

__all__ = ["parse_duration", "format_ms", "table_path", "open_for_use", "SearchLatency",
           "measured_table", "MEASURED_TOP", "LatencyBudgets", "BudgetChoice"]

log = logging.getLogger(__name__)

_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([^\s0-9.]*)\s*$")
# Trials of a latency search measured whole at its end: the best and the next few.
MEASURED_TOP = 3


def parse_duration(text: str, what: str = "--target-latency") -> float:
    """``12ms`` -> 0.012 seconds; units ``us`` (or ``µs``), ``ms``, ``s``."""
    match = _DURATION.match(str(text))
    if not match:
        raise UsageError(f"{what} {text!r} is not a number with a unit (e.g. 12ms, 800us, 0.5s)")
    unit = match.group(2)
    if unit not in _UNITS:
        hint = "give a unit" if not unit else f"unknown unit {unit!r}"
        raise UsageError(f"{what} {text!r}: {hint}; use us, ms or s (e.g. 12ms)")
    seconds = float(match.group(1)) * _UNITS[unit]
    if not 0 < seconds <= 3600:
        raise UsageError(f"{what} {text!r} must be more than 0 and at most an hour")
    return seconds


def format_ms(seconds: float) -> str:
    return f"{1e3 * seconds:.2f} ms"


def table_path(given: Optional[str]) -> Path:
    """``given``, or this machine's default table (torch, torch's current threads, batch 1)."""
    return Path(given) if given else default_table_path(TimingSettings())


def open_for_use(path: Path, *, allow_foreign: bool, build_command: str) -> LatencyTable:
    """Load a table to price genomes with; a table from another machine is refused unless
    ``allow_foreign``, and then used with a warning."""
    table = LatencyTable.load(path, build_command=build_command)
    why = table.mismatch()
    if why:
        if not allow_foreign:
            raise TableError(f"latency table {str(path)!r} was measured on another machine "
                             f"({why}); build this machine's with `{build_command}`, or pass "
                             "--allow-foreign-table to use it anyway")
        log.warning("latency table %s was measured on another machine (%s): predictions are "
                    "for that machine", path, why)
    return table


class SearchLatency:
    """The predicted latency of a search's genomes, from a table that covers its space."""

    def __init__(self, path: Path, *, allow_foreign: bool, space: SearchSpace,
                 space_path: Optional[str], resolution: int, num_classes: int,
                 in_channels: int) -> None:
        space_flag = f" --space {space_path}" if space_path else ""
        build_command = (f"nas latency build --table {path}{space_flag} --resolution "
                         f"{resolution} --num-classes {num_classes} --in-channels {in_channels}")
        self.table = open_for_use(path, allow_foreign=allow_foreign, build_command=build_command)
        wanted = space_units(space, resolution, num_classes, in_channels)
        missing = self.table.missing(wanted)
        if missing:
            raise TableError(f"latency table {str(path)!r} lacks {len(missing)} of the "
                             f"{len(wanted)} blocks this space can produce at {resolution} px; "
                             f"measure them with `{build_command}`")
        self.predictor = Predictor(self.table)
        self.digest = self.table.digest(unit.key for unit in wanted)
        self.resolution, self.num_classes, self.in_channels = resolution, num_classes, in_channels
        self.fastest, self.slowest = self.predictor.extremes(space, resolution, num_classes,
                                                             in_channels)

    def study_attrs(self) -> dict[str, str]:
        return {"latency_table_path": str(self.table.path),
                "latency_table_fingerprint": self.table.describe()}

    def check_target(self, target: float, window: float) -> None:
        """A target no genome of the space can meet is an error that names the fastest."""
        if target * (1 + window) < self.fastest.seconds:
            raise SpaceError(f"target latency {format_ms(target)} is below the fastest genome "
                             f"this space can produce on this machine: "
                             f"{format_ms(self.fastest.seconds)} predicted; raise "
                             "--target-latency (or search a smaller space)")
        if window and target * (1 - window) > self.slowest.seconds:
            raise SpaceError(f"target latency {format_ms(target)} is above the slowest genome "
                             f"of the space ({format_ms(self.slowest.seconds)} predicted); "
                             "lower --target-latency or use --cost-window 0")

    def predict(self, genome: Genome) -> float:
        return self.predictor.seconds(genome, self.resolution, self.num_classes,
                                      self.in_channels)

    def measure_top(self, trials: Sequence[Any], run_dir: Path,
                    top: int = MEASURED_TOP) -> list[dict[str, Any]]:
        """Measure the ``top`` trials by reward (distinct genomes) whole, with the table's
        settings; write ``latency.json`` into ``run_dir`` and return its rows."""
        ranked = sorted((r for r in map(TrialRecord, trials)
                         if r.state in ("complete", "reused") and r.reward is not None),
                        key=lambda r: -r.reward)
        chosen, seen = [], set()
        for record in ranked:
            if record.attrs[DIGEST] not in seen and len(chosen) < top:
                seen.add(record.attrs[DIGEST])
                chosen.append(record)
        if not chosen:
            return []
        networks = [Network(f"trial {r.number}", r.genome, self.resolution, self.num_classes,
                            self.in_channels) for r in chosen]
        timings = measure_networks(networks, self.table.settings, desc="measure best")
        rows = [{"trial": r.number, "reward": r.reward, "predicted_s": r.cost,
                 "measured_s": timing.seconds, "spread": round(timing.spread, 4),
                 "flops": r.costs()["flops"]}
                for r, timing in zip(chosen, timings)]
        atomic_write_json(RunFolder(run_dir).latency_json, {
            "table": str(self.table.path), "table_digest": self.digest,
            "fingerprint": self.table.fingerprint, "resolution": self.resolution,
            "num_classes": self.num_classes, "in_channels": self.in_channels, "trials": rows})
        return rows


def measured_table(rows: Sequence[dict[str, Any]]) -> str:
    """The predicted and measured latency of measured trials, as a text table."""
    return format_table(
        ["trial", "reward", "multiply-adds", "predicted", "measured", "error"],
        [[row["trial"], f"{row['reward']:.4f}", format_count(row["flops"]),
          format_ms(row["predicted_s"]), format_ms(row["measured_s"]),
          f"{100 * (row['predicted_s'] / row['measured_s'] - 1):+.1f}%"] for row in rows])


# -- scaling to a latency budget -----------------------------------------------------------


@dataclass(frozen=True)
class BudgetChoice:
    budget: float  # seconds
    phi: float
    predicted: float  # seconds


class LatencyBudgets:
    """For each latency budget, the largest member of a family predicted to meet it."""

    def __init__(self, genome: Genome, budgets_text: str, *, table: Optional[str],
                 allow_foreign: bool, method: str, coefficients: dict[str, float],
                 num_classes: int, in_channels: int) -> None:
        from scaling import phi_for_budget

        budgets = [parse_duration(item.strip(), "--target-latency")
                   for item in str(budgets_text).split(",")]
        path = table_path(table)
        self.table = open_for_use(path, allow_foreign=allow_foreign,
                                  build_command=f"nas latency build --table {path}")
        self.num_classes, self.in_channels = num_classes, in_channels
        # Entries measured for the members are saved with the results, not on an error.
        predictor = Predictor(self.table, fill=lambda table, missing: measure_units(
            table, missing, save=False))
        self.choices = []
        for budget in budgets:
            phi, predicted = phi_for_budget(
                genome, budget, lambda g: predictor.seconds(g, None, num_classes, in_channels),
                method, **coefficients, describe=format_ms)
            self.choices.append(BudgetChoice(budget=budget, phi=phi, predicted=predicted))

    @property
    def phis(self) -> list[float]:
        return sorted({choice.phi for choice in self.choices})

    def report(self, members: Sequence[Any]) -> bytes:
        """Measure ``members`` (scaling.Member) whole, print predicted against measured
        beside multiply-adds, and return ``latency.json``."""
        by_phi = {member.phi: member for member in members}
        networks = [Network(m.name, m.genome, m.resolution, self.num_classes, self.in_channels)
                    for m in members]
        timings = dict(zip((m.phi for m in members),
                           measure_networks(networks, self.table.settings, desc="measure")))
        rows = []
        for choice in self.choices:
            member, timing = by_phi[choice.phi], timings[choice.phi]
            rows.append({"budget_s": choice.budget, "phi": choice.phi, "name": member.name,
                         "resolution": member.resolution, "flops": member.cost.flops,
                         "predicted_s": choice.predicted, "measured_s": timing.seconds,
                         "spread": round(timing.spread, 4)})
        print(f"\nlatency budgets ({self.table.describe()}; {self.in_channels} input "
              f"channel(s), {self.num_classes} classes):")
        print(format_table(
            ["budget", "phi", "name", "resolution", "multiply-adds", "predicted", "measured",
             "measured/budget"],
            [[format_ms(r["budget_s"]), f"{r['phi']:g}", r["name"], r["resolution"],
              format_count(r["flops"]), format_ms(r["predicted_s"]), format_ms(r["measured_s"]),
              f"{r['measured_s'] / r['budget_s']:.2f}"] for r in rows]))
        self.table.save()
        return (json.dumps({"table": str(self.table.path), "fingerprint": self.table.fingerprint,
                            "members": rows}, indent=2) + "\n").encode()
