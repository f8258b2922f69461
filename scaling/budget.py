"""Scaling to a budget: the largest member of a family whose predicted cost fits.

The cost is any callable of a genome (``nas`` passes a latency predictor; this package
never imports ``nas``). Phi need not be whole: members are searched on a grid of
``step``. A measured cost is not monotone in phi: on a 2-core EPYC the latency table
priced a member at 232 px 28.0 ms and the next one, at 248 px, 22.9 ms (odd feature-map
sizes run slower). So the doubling does not stop at the first member over the budget but
goes on until one costs twice the budget, and the bisection runs above the largest
doubling point that fits. The phi returned always fits; it is the largest on the grid
when cost grows with phi between two doubling points.
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
    costs = {0: low_cost}
    doubling = [0]
    k = 1
    while True:  # double until a member costs twice the budget, or the last phi
        k = min(k, top)
        costs[k] = cost_at(k)
        doubling.append(k)
        if costs[k] > 2 * budget or k == top:
            break
        k *= 2
    fitting = [k for k in doubling if costs[k] <= budget]
    low = fitting[-1]
    if low == top:
        raise ScalingError(f"budget {describe(budget)} is above phi {top * step:g} "
                           f"({describe(costs[top])}), the largest member this search "
                           "goes to")
    high = doubling[doubling.index(low) + 1]
    while high - low > 1:
        middle = (low + high) // 2
        costs[middle] = cost_at(middle)
        if costs[middle] <= budget:
            low = middle
        else:
            high = middle
    phi = round(low * step, 10)
    return (int(phi) if float(phi).is_integer() else phi), costs[low]

