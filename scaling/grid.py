"""Grid search for the compound coefficients, as EfficientNet found alpha, beta, gamma.

Tan & Le (2019, Section 4): fix phi = 1, assume about twice the resources, and search
alpha, beta, gamma >= 1 under ``alpha * beta^2 * gamma^2 ~ 2`` for the best accuracy of
the scaled B0. Here the accuracy comes from the caller (``evaluate``), so this module
stays free of training code; ``nas scale --grid`` passes the project's proxy evaluator.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from tqdm import tqdm

from space import Genome, cost
from space.files import loads_json, read_text_file

from .factors import ScalingError, resolve_coefficients, scaling_factors
from .scaler import _apply

__all__ = ["Coefficients", "GridRow", "GridResult", "DEFAULT_CANDIDATES", "grid_search"]

# Each of alpha, beta, gamma takes one of these. With the default 5% tolerance this
# leaves 30 triples, the paper's (1.2, 1.1, 1.15) among them (product 1.92).
DEFAULT_CANDIDATES = (1.0, 1.1, 1.15, 1.2, 1.3, 1.4)


@dataclass(frozen=True)
class Coefficients:
    """Compound-scaling coefficients (each >= 1); the JSON file ``nas scale
    --coefficients FILE`` reads: ``{"alpha": 1.2, "beta": 1.1, "gamma": 1.15}``."""

    alpha: float
    beta: float
    gamma: float

    def __post_init__(self) -> None:
        resolve_coefficients("compound", alpha=self.alpha, beta=self.beta, gamma=self.gamma)

    @property
    def product(self) -> float:
        """``alpha * beta^2 * gamma^2``: the multiply-add growth per unit of phi."""
        return self.alpha * self.beta ** 2 * self.gamma ** 2

    def to_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, source: Union[str, os.PathLike]) -> "Coefficients":
        """Read JSON text or a file; exactly the keys alpha, beta, gamma."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = read_text_file(source, "coefficient file", ScalingError)
        data = loads_json(text, "coefficient file", ScalingError)
        if not isinstance(data, dict) or set(data) != {"alpha", "beta", "gamma"}:
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ScalingError(f"coefficient file must be a JSON object with exactly the keys "
                               f"alpha, beta, gamma; found {found}")
        return cls(alpha=data["alpha"], beta=data["beta"], gamma=data["gamma"])


@dataclass(frozen=True)
class GridRow:
    """One tried triple: its product, the phi = 1 member's multiply-adds (at that
    member's resolution) and the evaluator's score (higher is better)."""

    alpha: float
    beta: float
    gamma: float
    product: float
    flops: int
    score: float


@dataclass(frozen=True)
class GridResult:
    """Every row in the order tried, and the chosen one (highest score; ties go to the
    product nearest the target, then to the earlier row)."""

    rows: tuple[GridRow, ...]
    best: GridRow
    target: float
    tolerance: float

    @property
    def coefficients(self) -> Coefficients:
        return Coefficients(alpha=self.best.alpha, beta=self.best.beta, gamma=self.best.gamma)


def grid_search(genome: Genome, evaluate: Callable[[Genome], float], *,
                candidates: Sequence[float] = DEFAULT_CANDIDATES, target: float = 2.0,
                tolerance: float = 0.05, num_classes: int = 1000, in_channels: int = 3,
                progress: bool = False) -> GridResult:
    """Try every (alpha, beta, gamma) from ``candidates``^3 whose ``alpha * beta^2 *
    gamma^2`` lies within ``tolerance`` (relative) of ``target``: scale ``genome`` to
    phi = 1 with it and score the result with ``evaluate`` (higher is better; a
    non-finite score never wins).

    ``flops`` in the rows is per image at the member's resolution for ``num_classes``
    and ``in_channels``. Raises :class:`ScalingError` when no triple qualifies or none
    scores a finite number.
    """
    values = sorted({float(value) for value in candidates})
    if not values or any(not math.isfinite(value) or value < 1.0 for value in values):
        raise ScalingError(f"grid candidates must be numbers >= 1, got {list(candidates)}")
    if not (math.isfinite(target) and target > 1.0):
        raise ScalingError(f"grid target must be a number > 1, got {target!r}")
    if not (math.isfinite(tolerance) and 0.0 <= tolerance < 1.0):
        raise ScalingError(f"grid tolerance must be in [0, 1), got {tolerance!r}")
    triples = [(a, b, g) for a, b, g in itertools.product(values, repeat=3)
               if abs(a * b * b * g * g - target) <= tolerance * target]
    if not triples:
        raise ScalingError(f"no (alpha, beta, gamma) from {values} has alpha*beta^2*gamma^2 "
                           f"within {tolerance:.0%} of {target:g}; widen the candidates or "
                           f"the tolerance")
    rows: list[GridRow] = []
    bar = tqdm(triples, desc="grid", unit="model", disable=not progress)
    for alpha, beta, gamma in bar:
        # _apply rather than scale(): the triple is already vetted, no per-row warnings.
        member = _apply(genome, scaling_factors(1, "compound", alpha=alpha, beta=beta,
                                                gamma=gamma), 1)
        score = float(evaluate(member))
        rows.append(GridRow(alpha=alpha, beta=beta, gamma=gamma,
                            product=alpha * beta ** 2 * gamma ** 2,
                            flops=cost(member, num_classes=num_classes,
                                       in_channels=in_channels).flops,
                            score=score))
        leader = _best(rows, target)
        bar.set_postfix_str(f"{alpha:g}/{beta:g}/{gamma:g} score {score:.4g}; best "
                            f"{leader.alpha:g}/{leader.beta:g}/{leader.gamma:g}"
                            if leader else f"score {score:.4g}")
    best = _best(rows, target)
    if best is None:
        raise ScalingError("the evaluator gave no finite score for any grid point")
    return GridResult(rows=tuple(rows), best=best, target=target, tolerance=tolerance)


def _best(rows: Sequence[GridRow], target: float) -> GridRow | None:
    finite = [row for row in rows if math.isfinite(row.score)]
    if not finite:
        return None
    # max() keeps the first of equal keys, so earlier rows win full ties.
    return max(finite, key=lambda row: (row.score, -abs(row.product - target)))
