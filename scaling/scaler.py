"""Applying scaling factors to a genome: one member (:func:`scale`) or a family
(:func:`family`).

Rounding (the conventions of the EfficientNet reference code and torchvision, which
make ``method="official"`` reproduce torchvision's B0..B7 parameter counts exactly):

- channels of the stem, every stage and the head: ``space.round_channels(c x width)``,
  a multiple of 8 and never below 90% of the exact value;
- layers: ``ceil(n x depth)`` per stage (:func:`scaling.factors.scale_depth`), except
  for ``fast``, which rounds to the nearest whole number as the paper's pycls does;
- resolution: the nearest multiple of 8 of ``base x resolution`` for the formula
  methods, the published size for the official table
  (:func:`scaling.factors.round_resolution`).

Because of that rounding a member's cost is not exactly the nominal multiplier: see
``docs/scaling.md`` for the measured ratios.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from dataclasses import dataclass
from typing import Iterable, Optional

from space import Cost, Genome, GenomeError, cost, round_channels

from .factors import (Factors, ScalingError, coefficient_warning,
                      resolve_coefficients, round_resolution, scale_depth, scaling_factors)

__all__ = ["Member", "scale", "family", "member_name"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One member of a scaled family.

    ``depth_multiplier``, ``width_multiplier`` and ``resolution_multiplier`` are the
    nominal factors of the method (e.g. 1.2^phi), before rounding; ``genome`` holds the
    rounded architecture and ``resolution`` the actual input size. ``cost`` is per image
    at that resolution (multiply-adds, parameters, activations) for the ``num_classes``
    and ``in_channels`` the family was costed with; ``flops_ratio`` is this member's
    multiply-adds over those of the phi = 0 member of the same method.
    """

    phi: float
    genome: Genome
    depth_multiplier: float
    width_multiplier: float
    resolution_multiplier: float
    cost: Cost
    flops_ratio: float

    @property
    def name(self) -> str:
        return self.genome.name

    @property
    def resolution(self) -> int:
        return self.genome.resolution


def member_name(base_name: str, phi: float) -> str:
    """``efficientnet-b0`` + phi 3 -> ``efficientnet-b3``; ``trial-17`` -> ``trial-17-b3``;
    an unnamed base -> ``b3``. A trailing ``-b0`` is the family's own phi-0 label, so it
    is replaced rather than stacked."""
    stem = base_name[:-3] if base_name.endswith("-b0") else base_name
    label = f"b{phi:g}"
    return f"{stem}-{label}" if stem else label


def _apply(genome: Genome, factors: Factors, phi: float) -> Genome:
    width = factors.width
    exact = genome.resolution * factors.resolution
    # The table's sizes are for a 224 px B0 (resolution = size / 224); another base keeps
    # the ratio, rounded to whole pixels.
    pixels = round(exact) if factors.exact_resolution else round_resolution(exact)
    try:
        stages = tuple(
            dataclasses.replace(stage, out_channels=round_channels(stage.out_channels * width),
                                num_layers=scale_depth(stage.num_layers, factors.depth,
                                                      nearest=factors.nearest_depth))
            for stage in genome.stages)
        return dataclasses.replace(
            genome,
            stages=stages,
            stem_channels=round_channels(genome.stem_channels * width),
            head_channels=round_channels(genome.head_channels * width),
            dropout=genome.dropout if factors.dropout is None else factors.dropout,
            resolution=pixels,
            resolution_multiplier=genome.resolution_multiplier * pixels / genome.resolution,
            name=member_name(genome.name, phi),
        )
    except GenomeError as error:
        raise ScalingError(f"phi = {phi:g} scales the genome past what a genome may hold "
                           f"({error}); use a smaller phi") from None


def _phi_value(phi: float) -> float | int:
    """Integers stay integers so that names, files and JSON read ``b3``, not ``b3.0``."""
    return int(phi) if float(phi).is_integer() else float(phi)


def scale(genome: Genome, phi: float, method: str = "compound", *,
          alpha: Optional[float] = None, beta: Optional[float] = None,
          gamma: Optional[float] = None) -> Genome:
    """Member ``phi`` of ``genome``'s family: a new, valid genome.

    ``method``: ``"compound"`` (``alpha``, ``beta``, ``gamma``, defaults 1.2, 1.1, 1.15),
    ``"official"`` (the B0..B7 table, phi 0..7, dropout from the table), ``"fast"``
    (``alpha`` = a in [0, 1], default 0.8), or ``"width"``, ``"depth"``, ``"resolution"``
    alone; see :mod:`scaling.factors`. The result is named ``<base>-b<phi>`` and its
    ``resolution_multiplier`` is its resolution over the base's, times the base's own
    multiplier. Compound coefficients whose ``alpha * beta^2 * gamma^2`` is more than 10%
    away from 2 are logged as a warning.
    """
    coefficients = resolve_coefficients(method, alpha=alpha, beta=beta, gamma=gamma)
    if method == "compound":
        _warn_coefficients(coefficients)
    factors = scaling_factors(phi, method, **coefficients)
    return _apply(genome, factors, _phi_value(phi))


def _warn_coefficients(coefficients: dict[str, float]) -> None:
    message = coefficient_warning(**coefficients)
    if message:
        logger.warning(message)


def family(genome: Genome, phis: Iterable[float], method: str = "compound", *,
           alpha: Optional[float] = None, beta: Optional[float] = None,
           gamma: Optional[float] = None, num_classes: int = 1000,
           in_channels: int = 3) -> list[Member]:
    """The members ``phis`` of ``genome``'s family, in the order given, with their costs.

    Costs are per image at each member's resolution for ``num_classes`` outputs and
    ``in_channels`` input channels (defaults: ImageNet, as the papers report them).
    ``flops_ratio`` divides by the phi = 0 member's multiply-adds whether or not 0 is
    among ``phis``. Every phi is checked before any member is built.
    """
    phis = [_phi_value(_check_phi(phi)) for phi in phis]
    if not phis:
        raise ScalingError("no phi given; ask for at least one member (e.g. phi 0..7)")
    repeated = sorted({phi for phi in phis if phis.count(phi) > 1})
    if repeated:
        raise ScalingError(f"phi {repeated[0]:g} is asked for twice; give each member once")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1 \
            or isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ScalingError(f"num_classes and in_channels must be positive integers, got "
                           f"{num_classes!r} and {in_channels!r}")
    coefficients = resolve_coefficients(method, alpha=alpha, beta=beta, gamma=gamma)
    all_factors = [scaling_factors(phi, method, **coefficients) for phi in phis]
    if method == "compound":
        _warn_coefficients(coefficients)
    reference = cost(_apply(genome, scaling_factors(0, method, **coefficients), 0),
                     num_classes=num_classes, in_channels=in_channels)
    members = []
    for phi, factors in zip(phis, all_factors):
        member = _apply(genome, factors, phi)
        member_cost = cost(member, num_classes=num_classes, in_channels=in_channels)
        members.append(Member(phi=phi, genome=member, depth_multiplier=factors.depth,
                              width_multiplier=factors.width,
                              resolution_multiplier=factors.resolution, cost=member_cost,
                              flops_ratio=member_cost.flops / reference.flops))
    return members


def _check_phi(phi: object) -> float:
    if isinstance(phi, bool) or not isinstance(phi, numbers.Real) or not math.isfinite(phi):
        raise ScalingError(f"phi = {phi!r}: expected a finite number")
    return float(phi)

