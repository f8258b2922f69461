"""The units a network is timed by: its stem, each block and its head.

A latency table (``nas latency``) prices a genome as the sum of its units' measured
latencies. A unit is fully resolved (channels, kernel, stride, squeeze width, input size,
activation), so two genomes that share a block share its table entry. The numbers come
from :func:`space.blocks.resolve_blocks` and the input sizes from the layer records of
:mod:`space.graph`: the same description as the torch model and the analytic cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .blocks import BlockSpec, resolve_blocks
from .genome import Genome
from .graph import _layers
from .schema import BLOCK_CHOICES, FIELDS_BY_NAME

__all__ = ["Unit", "units", "UNIT_KINDS"]

UNIT_KINDS = ("stem", "block", "head")


@dataclass(frozen=True)
class Unit:
    """One timed piece of a network, as the model builds it.

    ``stem``: 3x3 stride-2 convolution, batch norm, activation. ``block``: one MBConv
    (``expanded_channels`` is 0 without the 1x1 expansion; ``se_channels`` 0 without SE).
    ``head``: 1x1 convolution, batch norm, activation, pooling, dropout and the classifier
    with ``num_classes`` outputs. ``size`` is the input's height and width. ``stage`` is
    where the unit sits in the genome it came from (-1 for the stem, the number of stages
    for the head); it is not part of :attr:`key`.
    """

    kind: str
    in_channels: int
    out_channels: int
    size: int
    activation: str
    kernel_size: int = 1
    stride: int = 1
    expanded_channels: int = 0
    se_channels: int = 0
    num_classes: int = 0
    choices: tuple[tuple[str, str], ...] = ()
    stage: int = field(default=0, compare=False)

    @property
    def key(self) -> str:
        """Canonical name of the entry, e.g. ``block-i24-o40-x144-k5-s2-se6-56px-silu``."""
        if self.kind == "stem":
            return f"stem-i{self.in_channels}-o{self.out_channels}-{self.size}px-{self.activation}"
        if self.kind == "head":
            return (f"head-i{self.in_channels}-o{self.out_channels}-c{self.num_classes}-"
                    f"{self.size}px-{self.activation}")
        tags = "".join(f"-{dict(FIELDS_BY_NAME[name].unit_tags).get(value, value)}"
                       for name, value in self.choices)
        return (f"block-i{self.in_channels}-o{self.out_channels}-x{self.expanded_channels}-"
                f"k{self.kernel_size}-s{self.stride}-se{self.se_channels}-{self.size}px-"
                f"{self.activation}{tags}")

    def block_spec(self) -> BlockSpec:
        """The block's :class:`BlockSpec` (at position 0, without drop-connect: inference)."""
        assert self.kind == "block", self.kind
        return BlockSpec(stage_index=0, block_index=0, in_channels=self.in_channels,
                         out_channels=self.out_channels,
                         has_expansion=self.expanded_channels > 0,
                         expanded_channels=self.expanded_channels or self.in_channels,
                         kernel_size=self.kernel_size, stride=self.stride,
                         se_channels=self.se_channels, drop_connect=0.0,
                         **dict(self.choices))


def units(genome: Genome, resolution: Optional[int] = None, num_classes: int = 1000,
          in_channels: int = 3) -> list[Unit]:
    """The stem, blocks and head of ``genome`` in data-flow order (``resolution``
    defaults to the genome's deployment resolution)."""
    layers = _layers(genome, resolution, num_classes, in_channels)
    activation = genome.activation
    block_inputs: dict[int, tuple[int, ...]] = {}
    for layer in layers.values():
        if layer["block"] is not None:
            block_inputs.setdefault(layer["block"], layer["in_shape"])
    stem_shape = layers["stem"]["in_shape"]
    result = [Unit(kind="stem", in_channels=in_channels, out_channels=genome.stem_channels,
                   size=stem_shape[1], activation=activation, kernel_size=3, stride=2,
                   stage=-1)]
    for spec in resolve_blocks(genome):
        result.append(Unit(
            kind="block", in_channels=spec.in_channels, out_channels=spec.out_channels,
            size=block_inputs[spec.block_index][1], activation=activation,
            kernel_size=spec.kernel_size, stride=spec.stride,
            expanded_channels=spec.expanded_channels if spec.has_expansion else 0,
            se_channels=spec.se_channels, stage=spec.stage_index,
            choices=tuple((choice.name, getattr(spec, choice.name)) for choice in BLOCK_CHOICES
                          if getattr(spec, choice.name) != choice.default)))
    head_shape = layers["head"]["in_shape"]
    result.append(Unit(kind="head", in_channels=head_shape[0],
                       out_channels=genome.head_channels, size=head_shape[1],
                       activation=activation, num_classes=num_classes,
                       stage=len(genome.stages)))
    return result
