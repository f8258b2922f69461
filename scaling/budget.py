"""Scaling to a budget: the largest member of a family whose predicted cost fits.

The cost is any callable of a genome (``nas`` passes a latency predictor; this package
never imports ``nas``). Phi need not be whole: members are searched on a grid of
``step`` by bisection, since cost grows with phi (up to the rounding of channels, layers
and pixels, which bisection tolerates: the phi returned always fits).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from space import Genome

from .factors import OFFICIAL_TABLE, ScalingError, resolve_coefficients
from .scaler import scale

__all__ = ["phi_for_budget", "MAX_BUDGET_PHI"]

# Past this every method's members exceed what a genome may hold (space.genome.LIMITS).
MAX_BUDGET_PHI = 32.0


def phi_for_budget(genome: Genome, budget: float, predict: Callable[[Genome], float],
                   method: str = "compound", *, alpha: Optional[float] = None,
                   beta: Optional[float] = None, gamma: Optional[float] = None,
                   step: float = 0.01,
                   describe: Callable[[float], str] = "{:g}".format) -> tuple[float, float]:
    """``(phi, predicted cost)`` of the largest member on the grid of ``step`` (whole
    numbers for the official table) whose predicted cost is at most ``budget``.
    ``describe`` formats a cost for messages."""
    coefficients = resolve_coefficients(method, alpha=alpha, beta=beta, gamma=gamma)
    step = 1.0 if method == "official" else step
    top = (len(OFFICIAL_TABLE) - 1 if method == "official"
           else int(MAX_BUDGET_PHI / step))

    def cost_at(k: int) -> float:
        try:
            member = scale(genome, round(k * step, 10), method, **coefficients)
        except ScalingError:
            return math.inf  # past what a genome may hold: over any budget
        return predict(member)

    low_cost = cost_at(0)
    if low_cost > budget:
        raise ScalingError(f"budget {describe(budget)} is below the base genome's own "
                           f"{describe(low_cost)}; phi 0 is the smallest member")
    low, high = 0, 1
    costs = {0: low_cost}
    while True:  # grow by doubling until a member exceeds the budget
        high = min(high, top)
        costs[high] = cost_at(high)
        if costs[high] > budget:
            break
        if high == top:
            raise ScalingError(f"budget {describe(budget)} is above phi {high * step:g} "
                               f"({describe(costs[high])}), the largest member this search "
                               "goes to")
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        costs[middle] = cost_at(middle)
        if costs[middle] <= budget:
            low = middle
        else:
            high = middle
    phi = round(low * step, 10)
    return (int(phi) if float(phi).is_integer() else phi), costs[low]

