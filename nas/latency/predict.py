"""Predicting a genome's latency from a table, and what a search space can reach.

A genome's predicted latency is ``scale x (sum of its units' entries) + offset``
(:class:`~nas.latency.table.Overhead`). A block of stage ``s`` depends only on that
stage's choices and on the previous stage's output channels, so the units a space can
produce are enumerated stage by stage (never genome by genome), and its fastest and
slowest genomes are found exactly by dynamic programming over the stages.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

from space import Genome, SearchSpace, Stage, Unit, units

from .table import LatencyTable, TableError

__all__ = ["Predictor", "StageVariant", "stage_variants", "space_units", "Extreme"]


@dataclass(frozen=True)
class StageVariant:
    """Stage ``stage`` with one set of choices after a previous stage of ``in_channels``
    outputs: its first block, the block it repeats (None for one layer) and, for the last
    stage, the head that follows it."""

    stage: int
    in_channels: int
    choice: Stage  # num_layers is the space's largest choice for the stage
    first: Unit
    repeat: Optional[Unit]
    head: Optional[Unit]


def stage_variants(space: SearchSpace, resolution: int, num_classes: int,
                   in_channels: int) -> Iterator[StageVariant]:
    """Every (stage, previous output channels, choice) of ``space``, with its units taken
    from :func:`space.units` of a genome that holds it."""
    base = space.smallest()
    last = len(space.stages) - 1
    for index, choices in enumerate(space.stages):
        previous = ((space.stem_channels,) if index == 0
                    else space.stages[index - 1].out_channels)
        # every stage field the space offers (space.schema), at the most layers
        for before, stage in itertools.product(
                previous, choices.stages(num_layers=max(choices.num_layers))):
            stages = list(base.stages)
            if index > 0:
                stages[index - 1] = dataclasses.replace(stages[index - 1], out_channels=before)
            stages[index] = stage
            genome = dataclasses.replace(base, stages=tuple(stages), resolution=resolution)
            found = units(genome, resolution, num_classes, in_channels)
            mine = [unit for unit in found if unit.stage == index]
            yield StageVariant(stage=index, in_channels=before, choice=stage, first=mine[0],
                               repeat=mine[1] if len(mine) > 1 else None,
                               head=found[-1] if index == last else None)


def space_units(space: SearchSpace, resolution: int, num_classes: int,
                in_channels: int) -> list[Unit]:
    """Every distinct unit a genome of ``space`` can hold, each once."""
    found: dict[str, Unit] = {}
    smallest = space.smallest()
    stem = units(dataclasses.replace(smallest, resolution=resolution), resolution,
                 num_classes, in_channels)[0]
    found[stem.key] = stem
    for variant in stage_variants(space, resolution, num_classes, in_channels):
        for unit in (variant.first, variant.repeat, variant.head):
            if unit is not None:
                found.setdefault(unit.key, unit)
    return list(found.values())


@dataclass(frozen=True)
class Extreme:
    """The fastest (or slowest) genome of a space and its predicted seconds."""

    seconds: float
    genome: Genome


class Predictor:
    """Predicted seconds of a genome from a :class:`LatencyTable`.

    ``fill`` is called with the units a prediction lacks; it may measure them into the
    table (same machine) or raise. Without it a missing entry is a :class:`TableError`.
    """

    def __init__(self, table: LatencyTable,
                 fill: Optional[Callable[[LatencyTable, Sequence[Unit]], None]] = None) -> None:
        self.table = table
        self.fill = fill

    def _sum(self, genome_units: Sequence[Unit], what: str) -> float:
        missing = self.table.missing(genome_units)
        if missing:
            if self.fill is None:
                raise TableError(
                    f"latency table {str(self.table.path)!r} has no entry for {len(missing)} "
                    f"unit(s) of {what} (first: {missing[0].key}); add them with `nas latency "
                    "build` for its space, resolution, classes and channels")
            self.fill(self.table, missing)
        return self.table.unit_sum(genome_units)

    def seconds(self, genome: Genome, resolution: Optional[int] = None, num_classes: int = 10,
                in_channels: int = 1) -> float:
        total = self._sum(units(genome, resolution, num_classes, in_channels),
                          genome.name or "the genome")
        return self.from_sum(total)

    def from_sum(self, unit_sum: float) -> float:
        overhead = self.table.overhead
        return overhead.scale * unit_sum + overhead.offset

    def extremes(self, space: SearchSpace, resolution: int, num_classes: int,
                 in_channels: int) -> tuple[Extreme, Extreme]:
        """The fastest and the slowest genome of ``space`` by this predictor (exact: the
        sum is minimised over the stages with the previous width as the state)."""
        variants = list(stage_variants(space, resolution, num_classes, in_channels))
        stem = units(dataclasses.replace(space.smallest(), resolution=resolution),
                     resolution, num_classes, in_channels)[0]
        self._sum([stem] + [u for v in variants for u in (v.first, v.repeat, v.head)
                            if u is not None], "the space")
        results = []
        for better in (min, max):
            # state: output channels of the last stage so far -> (sum, stages chosen)
            state = {space.stem_channels: (self.table.unit_sum([stem]), ())}
            for index, choices in enumerate(space.stages):
                following: dict[int, tuple[float, tuple]] = {}
                for variant in (v for v in variants if v.stage == index):
                    if variant.in_channels not in state:
                        continue
                    before, chosen = state[variant.in_channels]
                    first = self.table.unit_sum([variant.first])
                    repeat = self.table.unit_sum([variant.repeat]) if variant.repeat else 0.0
                    for layers in choices.num_layers:
                        total = before + first + (layers - 1) * repeat
                        if variant.head is not None:
                            total += self.table.unit_sum([variant.head])
                        out = variant.choice.out_channels
                        if out not in following or better(total, following[out][0]) == total:
                            stage = dataclasses.replace(variant.choice, num_layers=layers)
                            following[out] = (total, chosen + (stage,))
                state = following
            total, stages = better(state.values(), key=lambda item: item[0])
            genome = dataclasses.replace(space.smallest(), stages=stages, resolution=resolution,
                                         name="fastest" if better is min else "slowest")
            results.append(Extreme(seconds=self.from_sum(total), genome=genome))
        return results[0], results[1]
