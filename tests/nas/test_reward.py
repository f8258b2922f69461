import math

import pytest

from nas.reward import REWARD_PRESETS, RewardSpec, reward


def test_soft_reward_matches_mnasnet_formula():
    spec = RewardSpec(400e6, *REWARD_PRESETS["soft"])
    assert reward(0.9, 400e6, spec) == pytest.approx(0.9)
    # half the target: 0.9 x 0.5^-0.07 = 0.9 x 1.04971
    assert reward(0.9, 200e6, spec) == pytest.approx(0.9 * 2 ** 0.07)
    assert reward(0.9, 800e6, spec) == pytest.approx(0.9 * 2 ** -0.07)
    assert math.isclose(reward(0.9, 200e6, spec) / reward(0.9, 400e6, spec), 1.0497, rel_tol=1e-4)


def test_hard_reward_ignores_savings_and_punishes_excess():
    spec = RewardSpec(400e6, *REWARD_PRESETS["hard"])
    assert reward(0.8, 100e6, spec) == pytest.approx(0.8)
    assert reward(0.8, 800e6, spec) == pytest.approx(0.4)


def test_invalid_reward_inputs():
    with pytest.raises(ValueError):
        RewardSpec(0)
    with pytest.raises(ValueError):
        reward(0.9, 0, RewardSpec(1.0))
