"""The arithmetic of scaling: how much depth, width and resolution grow for a given phi.

Pure functions of numbers, no genomes: :mod:`scaling.scaler` applies what they return.
Every method answers the same question, "for member phi, by what do depth (layers per
stage), width (channels) and resolution (input pixels per side) multiply?":

``compound``   EfficientNet (Tan & Le 2019, Section 3.3): depth ``alpha^phi``, width
               ``beta^phi``, resolution ``gamma^phi``; multiply-adds grow by about
               ``(alpha * beta^2 * gamma^2)^phi``, so the paper asks for that product ~ 2.
``official``   the released B0..B7 table (width, depth, resolution, dropout), which the
               paper set by hand rather than by the formula.
``fast``       fast compound scaling (Dollar, Singh & Girshick 2021, Section 5): for a
               multiply-add multiplier ``s = 2^phi`` and ``a`` in [0, 1], depth
               ``s^((1-a)/2)``, width ``s^(a/2)``, resolution ``s^((1-a)/4)``;
               activations then grow as ``s^(1 - a/2)``.
``width`` / ``depth`` / ``resolution``
               one dimension alone at the same multiplier ``s = 2^phi`` (width and
               resolution by ``sqrt(s)``, depth by ``s``), for the paper's Figure 3.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

from space import NasError

__all__ = ["ScalingError", "Factors", "METHODS", "OFFICIAL_TABLE", "DEFAULT_COMPOUND",
           "DEFAULT_FAST_ALPHA", "FLOPS_BASE", "OFFICIAL_BASE_RESOLUTION", "resolve_coefficients", "scaling_factors",
           "coefficient_warning", "round_resolution", "scale_depth"]


class ScalingError(NasError, ValueError):
    """A scaling request that cannot be honoured (bad phi, method or coefficients)."""


METHODS = ("compound", "official", "fast", "width", "depth", "resolution")

# EfficientNet's grid-searched coefficients at phi = 1 (Tan & Le 2019, Section 4).
DEFAULT_COMPOUND = {"alpha": 1.2, "beta": 1.1, "gamma": 1.15}
# The "dWr" setting Dollar et al. (2021) recommend as fast compound scaling.
DEFAULT_FAST_ALPHA = 0.8
# Multiply-add multiplier per unit of phi for the fast and single-dimension methods: the
# doubling that compound scaling aims at.
FLOPS_BASE = 2.0

# Released EfficientNet B0..B7 (the TensorFlow reference code's `efficientnet_params`,
# also torchvision's builders): (width, depth, resolution in pixels, dropout).
OFFICIAL_TABLE = (
    (1.0, 1.0, 224, 0.2),
    (1.0, 1.1, 240, 0.2),
    (1.1, 1.2, 260, 0.3),
    (1.2, 1.4, 300, 0.3),
    (1.4, 1.8, 380, 0.4),
    (1.6, 2.2, 456, 0.4),
    (1.8, 2.6, 528, 0.5),
    (2.0, 3.1, 600, 0.5),
)
OFFICIAL_BASE_RESOLUTION = 224

# Past this a multiplier cannot describe a genome that space.Genome accepts anyway; the
# check keeps float overflow out of the rounding code.
_MAX_FACTOR = 1e6
# ceil(n * d) must not add a layer for float noise such as 8 ** (1/3) = 2.0000000000000004.
_DEPTH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Factors:
    """Nominal multipliers of one member, before rounding.

    ``depth`` multiplies each stage's layers, ``width`` every channel count (stem, stages,
    head), ``resolution`` the base genome's input size. ``dropout`` is set only by the
    official table (the released models raise it with size); ``None`` keeps the base's.
    ``exact_resolution`` marks the official table, whose sizes (260, 300, 380) are used
    as published instead of being rounded to a multiple of 8. ``nearest_depth`` rounds
    each stage's layers to the nearest whole number (pycls, for fast scaling) instead of
    up (EfficientNet).
    """

    depth: float
    width: float
    resolution: float
    dropout: Optional[float] = None
    exact_resolution: bool = False
    nearest_depth: bool = False


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ScalingError(f"{name} = {value!r}: expected a finite number")
    return float(value)


def resolve_coefficients(method: str, *, alpha: Optional[float] = None,
                         beta: Optional[float] = None,
                         gamma: Optional[float] = None) -> dict[str, float]:
    """The coefficients ``method`` uses, with defaults filled in and values checked.

    compound: ``alpha``, ``beta``, ``gamma`` (each >= 1, as the paper constrains them;
    defaults 1.2, 1.1, 1.15). fast: ``alpha`` in [0, 1] (default 0.8); beta and gamma
    are not used. official, width, depth, resolution: no coefficients. A coefficient
    given to a method that does not use it is an error rather than silently ignored.
    """
    if method not in METHODS:
        raise ScalingError(f"unknown scaling method {method!r}; choose one of {', '.join(METHODS)}")
    given = {name: value for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma))
             if value is not None}
    if method == "compound":
        resolved = {name: _check_number(name, given.get(name, default))
                    for name, default in DEFAULT_COMPOUND.items()}
        low = [name for name, value in resolved.items() if value < 1.0]
        if low:
            raise ScalingError(f"compound scaling needs alpha, beta, gamma >= 1 (EfficientNet "
                               f"Section 3.3); got {low[0]} = {resolved[low[0]]:g}")
        return resolved
    if method == "fast":
        extra = sorted(set(given) - {"alpha"})
        if extra:
            raise ScalingError(f"fast scaling takes only alpha (the width share a in [0, 1]); "
                               f"remove {extra[0]}")
        value = _check_number("alpha", given.get("alpha", DEFAULT_FAST_ALPHA))
        if not 0.0 <= value <= 1.0:
            raise ScalingError(f"fast scaling needs alpha in [0, 1] (0: depth and resolution, "
                               f"1/3: uniform, 0.8: the paper's choice); got {value:g}")
        return {"alpha": value}
    if given:
        raise ScalingError(f"method {method!r} takes no coefficients; remove "
                           f"{sorted(given)[0]} or use --method compound or fast")
    return {}


def _check_phi(phi: object, method: str) -> float:
    value = _check_number("phi", phi)
    if value < 0:
        raise ScalingError(f"phi = {value:g}: expected phi >= 0 (0 is the base genome)")
    if method == "official":
        last = len(OFFICIAL_TABLE) - 1
        if not value.is_integer() or value > last:
            raise ScalingError(f"phi = {value:g}: the official EfficientNet table has B0..B{last} "
                               f"only; use an integer phi from 0 to {last}, or another method")
    return value


def scaling_factors(phi: float, method: str = "compound", *, alpha: Optional[float] = None,
                    beta: Optional[float] = None, gamma: Optional[float] = None) -> Factors:
    """Nominal depth, width and resolution multipliers of member ``phi`` (see module doc).

    ``scaling_factors(2)`` is depth 1.44, width 1.21, resolution 1.3225 (1.2^2, 1.1^2,
    1.15^2); ``scaling_factors(3, "fast", alpha=1/3)`` is depth and width 8^(1/3) = 2
    and resolution sqrt(2) for 8x the multiply-adds.
    """
    coefficients = resolve_coefficients(method, alpha=alpha, beta=beta, gamma=gamma)
    phi = _check_phi(phi, method)
    if method == "official":
        width, depth, pixels, dropout = OFFICIAL_TABLE[int(phi)]
        return Factors(depth=depth, width=width,
                       resolution=pixels / OFFICIAL_BASE_RESOLUTION, dropout=dropout,
                       exact_resolution=True)
    try:
        factors = _formula(method, phi, coefficients)
    except OverflowError:
        factors = Factors(depth=math.inf, width=math.inf, resolution=math.inf)
    if max(factors.depth, factors.width, factors.resolution) > _MAX_FACTOR:
        raise ScalingError(f"phi = {phi:g} is too large for method {method!r}: the multipliers "
                           f"exceed {_MAX_FACTOR:g}; use a smaller phi")
    return factors


def _formula(method: str, phi: float, coefficients: dict[str, float]) -> Factors:
    if method == "compound":
        return Factors(depth=coefficients["alpha"] ** phi, width=coefficients["beta"] ** phi,
                       resolution=coefficients["gamma"] ** phi)
    s = FLOPS_BASE ** phi
    if method == "fast":
        a = coefficients["alpha"]
        # Fast scaling's depth multipliers are small (2^0.1 = 1.07 per doubling at a = 0.8):
        # rounding them up would add a layer to every stage of B0 and make phi 1 cost
        # 3.05x instead of 2x, so depths round to nearest as in the paper's pycls scaler.
        return Factors(depth=s ** ((1 - a) / 2), width=s ** (a / 2),
                       resolution=s ** ((1 - a) / 4), nearest_depth=True)
    if method == "width":
        return Factors(depth=1.0, width=s ** 0.5, resolution=1.0)
    if method == "depth":
        return Factors(depth=s, width=1.0, resolution=1.0)
    return Factors(depth=1.0, width=1.0, resolution=s ** 0.5)


def coefficient_warning(alpha: float, beta: float, gamma: float, *, target: float = 2.0,
                        tolerance: float = 0.1) -> Optional[str]:
    """A sentence to show when ``alpha * beta^2 * gamma^2`` is not within ``tolerance``
    (relative) of ``target``; ``None`` when it is.

    Multiply-adds grow as depth x width^2 x resolution^2, so that product is the
    multiply-add growth per unit of phi (EfficientNet, Equation 3); far from 2, "phi"
    no longer means "twice the compute".
    """
    product = alpha * beta ** 2 * gamma ** 2
    if abs(product - target) <= tolerance * target:
        return None
    return (f"alpha*beta^2*gamma^2 = {alpha:g}*{beta:g}^2*{gamma:g}^2 = {product:.3f}, not "
            f"within {tolerance:.0%} of {target:g}: multiply-adds grow by about {product:.2f}x "
            f"per phi instead of doubling")


def round_resolution(pixels: float, divisor: int = 8) -> int:
    """The input size of a scaled member: ``pixels`` rounded to the nearest multiple of
    ``divisor`` (halves round up), never below ``divisor``.

    The project's rule for every method but the official table: sizes stay multiples of
    8, so the first three stride-2 layers divide them evenly (pycls rounds to 4). With
    EfficientNet's gamma = 1.15: 224 -> 257.6 -> 256 (B1), 296.2 -> 296 (B2),
    340.7 -> 344 (B3). The official table's sizes (240, 260, 300, 380, ...) are used as
    published, since the released models were trained at exactly those.
    """
    return max(divisor, int(math.floor(pixels / divisor + 0.5)) * divisor)


def scale_depth(num_layers: int, multiplier: float, *, nearest: bool = False) -> int:
    """Layers of a scaled stage: ``ceil(num_layers x multiplier)``, rounded up per stage
    as the EfficientNet reference code and torchvision do (``round_repeats``), or with
    ``nearest`` rounded to the nearest whole number as pycls's scaler does."""
    if nearest:
        return max(1, round(num_layers * multiplier))
    return max(1, math.ceil(num_layers * multiplier - _DEPTH_TOLERANCE))
