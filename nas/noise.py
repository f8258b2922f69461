"""How far apart two scores must be before one is better: standard errors and a verdict.

Every evaluator can say how noisy its scores are (:meth:`nas.evaluators.Evaluator.noise`).
For an accuracy ``p`` measured on ``n`` images that is at least the binomial standard
error ``sqrt(p (1 - p) / n)``: a genome at 87% on 5,000 validation images is known to
about +-0.48 points. Two scores differ *beyond noise* when the lead exceeds ``z`` times
their combined standard error ``sqrt(se_a^2 + se_b^2)`` (the standard error of a
difference of independent estimates); below that the verdict is "within noise".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

__all__ = ["binomial_standard_error", "combined_standard_error", "Verdict", "verdict"]


def binomial_standard_error(accuracy: float, images: int) -> float:
    """``sqrt(p (1 - p) / n)``: the standard error of an accuracy ``p`` on ``n`` images."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"images must be a positive integer, got {images!r}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy {accuracy!r} must lie in [0, 1]")
    return math.sqrt(accuracy * (1.0 - accuracy) / images)


def combined_standard_error(*errors: float) -> float:
    """The standard error of a difference (or sum) of independent estimates."""
    return math.sqrt(sum(error * error for error in errors))


@dataclass(frozen=True)
class Verdict:
    """Whether ``leader`` beats ``other`` by more than the noise of the two scores."""

    lead: float  # leader score minus other score (may be negative)
    standard_error: Optional[float]  # of the lead; None when a score's noise is unknown
    z: float
    beyond_noise: Optional[bool]  # None when the noise is unknown

    @property
    def text(self) -> str:
        if self.beyond_noise is None:
            return f"lead {self.lead:+.4g} (noise unknown)"
        relation = ">" if self.beyond_noise else "<="
        scale = "" if self.z == 1 else f"{self.z:g} x "
        return (f"{'beyond' if self.beyond_noise else 'within'} noise: lead {self.lead:+.4g} "
                f"{relation} {scale}standard error {self.standard_error:.4g}")


def verdict(leader: float, leader_error: Optional[float], other: float,
            other_error: Optional[float], *, z: float = 1.0) -> Verdict:
    """Is ``leader - other`` beyond ``z`` combined standard errors?

    ``z`` 1 (the default) asks whether the lead exceeds the standard error of the
    difference (about 84% one-sided confidence for normal errors); 1.645 and 1.96 give
    95% and 97.5%. A lead of exactly the threshold counts as within noise."""
    if not z > 0:
        raise ValueError(f"z must be positive, got {z!r}")
    lead = leader - other
    if leader_error is None or other_error is None:
        return Verdict(lead=lead, standard_error=None, z=z, beyond_noise=None)
    if leader_error < 0 or other_error < 0:
        raise ValueError("standard errors cannot be negative")
    error = combined_standard_error(leader_error, other_error)
    return Verdict(lead=lead, standard_error=error, z=z, beyond_noise=lead > z * error)
