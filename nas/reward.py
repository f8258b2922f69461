"""The MnasNet reward (Tan et al. 2019, Eq. 2): ``ACC(m) x [COST(m) / T] ^ w``.

``w = alpha`` when the cost is within the target and ``beta`` above it. Soft constraint:
alpha = beta = -0.07 (MnasNet; EfficientNet Section 4 with T = 400 M multiply-adds). Hard
constraint: alpha = 0, beta = -1 (no bonus below the target, a steep penalty above).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RewardSpec", "REWARD_PRESETS", "reward"]

REWARD_PRESETS = {"soft": (-0.07, -0.07), "hard": (0.0, -1.0)}


@dataclass(frozen=True)
class RewardSpec:
    target: float  # in the unit of the metric: multiply-adds, parameters, activations or seconds
    alpha: float = -0.07
    beta: float = -0.07

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise ValueError(f"reward target must be positive, got {self.target!r}")


def reward(accuracy: float, cost: float, spec: RewardSpec) -> float:
    """MnasNet reward of a model with score ``accuracy`` and ``cost`` against ``spec``."""
    if cost <= 0:
        raise ValueError(f"cost must be positive, got {cost!r}")
    exponent = spec.alpha if cost <= spec.target else spec.beta
    return accuracy * (cost / spec.target) ** exponent
