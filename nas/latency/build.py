"""Measuring into a latency table (``nas latency build``) and checking its predictions
against whole networks (``nas latency check``).

A build is resumable: the table file is rewritten atomically after every chunk of units,
so a killed build loses at most one chunk and a rerun measures only what is missing.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from tqdm import tqdm

from space import Genome, SearchSpace, Unit, build, cost, presets, unit_module

from .measure import Timing, TimingSettings, check_backend, time_modules
from .predict import Predictor, space_units
from .table import LatencyTable, TableError

__all__ = ["measure_units", "measure_networks", "build_table", "BuildReport", "open_table",
           "check_predictor", "check_networks", "CheckResult", "CheckRow", "Network"]

# Units timed together in one interleaved group, and saved together.
UNIT_CHUNK = 16
# Whole networks timed together (each holds its weights in memory meanwhile).
NETWORK_CHUNK = 6


@dataclass(frozen=True)
class Network:
    """A whole network to time: a genome at a resolution, classes and input channels."""

    label: str
    genome: Genome
    resolution: int
    num_classes: int
    in_channels: int


def _refuse_foreign(table: LatencyTable, doing: str) -> None:
    why = table.mismatch()
    if why:
        raise TableError(f"latency table {str(table.path)!r} was measured on another machine "
                         f"({why}); {doing} needs this machine's own table")


def measure_units(table: LatencyTable, wanted: Sequence[Unit], *, progress: bool = True,
                  save: bool = True) -> int:
    """Measure the units of ``wanted`` the table lacks into it, saving after each chunk
    (unless not ``save``: the caller saves once it has succeeded); returns how many were
    measured."""
    missing = table.missing(wanted)
    if not missing:
        return 0
    _refuse_foreign(table, "measuring new entries")
    check_backend(table.settings.backend)
    bar = tqdm(total=len(missing), unit="entry", desc="latency table", disable=not progress,
               dynamic_ncols=True)
    try:
        for start in range(0, len(missing), UNIT_CHUNK):
            part = missing[start:start + UNIT_CHUNK]
            began = time.perf_counter()
            timings = time_modules([(unit_module(unit), (unit.in_channels, unit.size, unit.size))
                                    for unit in part], table.settings)
            for unit, timing in zip(part, timings):
                table.entries[unit.key] = {"seconds": timing.seconds,
                                           "spread": round(timing.spread, 4)}
            table.build_seconds += time.perf_counter() - began
            if save:
                table.save()
            bar.update(len(part))
            bar.set_postfix(last=part[-1].key.split("-")[0], ms=f"{1e3 * timings[-1].seconds:.3f}",
                            spread=f"{max(t.spread for t in timings):.2f}")
    finally:
        bar.close()
    return len(missing)


def measure_networks(networks: Sequence[Network], settings: TimingSettings, *,
                     progress: bool = True, desc: str = "whole networks") -> list[Timing]:
    """Interleaved timings of whole networks, a few at a time."""
    check_backend(settings.backend)
    timings: list[Timing] = []
    bar = tqdm(total=len(networks), unit="net", desc=desc, disable=not progress,
               dynamic_ncols=True)
    try:
        for start in range(0, len(networks), NETWORK_CHUNK):
            part = networks[start:start + NETWORK_CHUNK]
            timings += time_modules(
                [(build(n.genome, num_classes=n.num_classes, in_channels=n.in_channels),
                  (n.in_channels, n.resolution, n.resolution)) for n in part], settings)
            bar.update(len(part))
            bar.set_postfix(last=part[-1].label, ms=f"{1e3 * timings[-1].seconds:.2f}")
    finally:
        bar.close()
    return timings


def open_table(path: Path, settings: TimingSettings) -> LatencyTable:
    """The table at ``path`` if it exists (measured with ``settings`` on this machine),
    else a new, empty one."""
    if not Path(path).exists():
        return LatencyTable(path, settings)
    table = LatencyTable.load(path)
    _refuse_foreign(table, "adding to it")
    if table.settings != settings:
        raise TableError(f"latency table {str(path)!r} was measured with "
                         f"{_settings_text(table.settings)}, not {_settings_text(settings)}; "
                         "give another --table (or the same settings)")
    return table


def _settings_text(settings: TimingSettings) -> str:
    return (f"{settings.backend}, {settings.threads} thread(s), batch {settings.batch_size}, "
            f"{settings.rounds}x{settings.repeats} calls")


@dataclass
class BuildReport:
    table: LatencyTable
    units_total: int
    units_measured: int
    networks_measured: int
    seconds: float


def build_table(space: SearchSpace, *, path: Path, settings: TimingSettings,
                resolution: Optional[int] = None, num_classes: int = 10, in_channels: int = 1,
                networks: int = 12, seed: int = 0, progress: bool = True) -> BuildReport:
    """Measure every unit ``space`` can produce at ``resolution`` (default: the space's)
    into the table at ``path``, then ``networks`` whole genomes of the space (its
    smallest, its largest and random ones) to fit the per-network overhead."""
    began = time.perf_counter()
    resolution = resolution or space.resolution
    check_backend(settings.backend)
    table = open_table(path, settings)
    wanted = space_units(space, resolution, num_classes, in_channels)
    measured = measure_units(table, wanted, progress=progress)
    rng = random.Random(seed)
    genomes = [space.smallest(), space.largest()]
    genomes += [space.random_genome(rng, name=f"random-{i}") for i in range(max(0, networks - 2))]
    todo = [Network(genome.name or f"network-{i}", dataclasses.replace(genome, resolution=resolution),
                    resolution, num_classes, in_channels)
            for i, genome in enumerate(genomes[:networks])]
    todo = [n for n in todo
            if not table.has_network(n.genome, resolution, num_classes, in_channels)]
    if todo:
        started = time.perf_counter()
        timings = measure_networks(todo, table.settings, progress=progress,
                                   desc="overhead fit")
        for network, timing in zip(todo, timings):
            table.add_network(network.genome, resolution, num_classes, in_channels,
                              timing.seconds, timing.spread)
        table.build_seconds += time.perf_counter() - started
    table.refit()
    table.save()
    return BuildReport(table=table, units_total=len(wanted), units_measured=measured,
                       networks_measured=len(todo), seconds=time.perf_counter() - began)


# -- check ------------------------------------------------------------------------------------


def check_networks(space: SearchSpace, resolution: int, *, random_count: int, family_top: int,
                   seed: int, num_classes: int, in_channels: int) -> list:
    """The networks ``nas latency check`` measures: random genomes of the space, the
    presets at ``resolution``, and EfficientNet B0..B<family_top> (official table)."""
    from scaling import family

    rng = random.Random(seed)
    networks = [Network(f"random-{i}", space.random_genome(rng, name=f"random-{i}"),
                        resolution, num_classes, in_channels) for i in range(random_count)]
    for name in presets.names():
        genome = dataclasses.replace(presets.get(name), resolution=resolution)
        networks.append(Network(name, genome, resolution, num_classes, in_channels))
    if family_top >= 0:
        for member in family(presets.get("efficientnet-b0"), range(family_top + 1), "official"):
            networks.append(Network(member.name, member.genome, member.resolution,
                                    num_classes, in_channels))
    return networks


@dataclass(frozen=True)
class CheckRow:
    label: str
    resolution: int
    predicted: float  # seconds
    measured: float
    spread: float
    flops: int
    activations: int
    params: int

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1


@dataclass
class CheckResult:
    rows: list[CheckRow]
    summary: dict[str, Any] = field(default_factory=dict)


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy import stats

    return float(stats.spearmanr(a, b)[0])


def _within(errors: np.ndarray, bound: float) -> float:
    return float(np.mean(np.abs(errors) <= bound))


def _fitted_errors(values: Sequence[float], measured: np.ndarray) -> np.ndarray:
    """Relative errors of the best line ``latency = a x value + b`` (fitted on these very
    networks, which favours the count)."""
    x = np.asarray(values, dtype=float)
    design = np.stack([x / measured, 1.0 / measured], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(measured), rcond=None)
    return (a * x + b) / measured - 1


def check_predictor(table: LatencyTable, networks: Sequence[Network], *,
                    progress: bool = True) -> CheckResult:
    """Measure ``networks`` whole and compare them with the table's predictions (units
    the table lacks are measured into it first), and with how well multiply-adds,
    activations and parameters alone predict the same measurements."""
    _refuse_foreign(table, "checking it")
    predictor = Predictor(table, fill=lambda t, missing: measure_units(t, missing,
                                                                       progress=progress))
    predicted = [predictor.seconds(n.genome, n.resolution, n.num_classes, n.in_channels)
                 for n in networks]
    timings = measure_networks(networks, table.settings, progress=progress, desc="check")
    rows = []
    for network, guess, timing in zip(networks, predicted, timings):
        counts = cost(network.genome, network.resolution, network.num_classes,
                      network.in_channels)
        rows.append(CheckRow(label=network.label, resolution=network.resolution,
                             predicted=guess, measured=timing.seconds, spread=timing.spread,
                             flops=counts.flops, activations=counts.activations,
                             params=counts.params))
    measured = np.array([row.measured for row in rows])
    errors = np.array([row.error for row in rows])
    summary: dict[str, Any] = {
        "networks": len(rows),
        "within_5pct": _within(errors, 0.05),
        "within_10pct": _within(errors, 0.10),
        "rmse_ms": float(1e3 * math.sqrt(np.mean((measured * errors) ** 2))),
        "rmse_relative": float(math.sqrt(np.mean(errors ** 2))),
        "spearman": _spearman([row.predicted for row in rows], measured),
        "overhead": dataclasses.asdict(table.overhead),
        "fingerprint": table.fingerprint,
    }
    for name in ("flops", "activations", "params"):
        values = [getattr(row, name) for row in rows]
        fitted = _fitted_errors(values, measured)
        summary[name] = {"spearman": _spearman(values, measured),
                         "pearson": float(np.corrcoef(values, measured)[0, 1]),
                         "line_within_10pct": _within(fitted, 0.10),
                         "line_rmse_relative": float(math.sqrt(np.mean(fitted ** 2)))}
    return CheckResult(rows=rows, summary=summary)
