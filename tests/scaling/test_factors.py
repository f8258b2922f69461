import math

import pytest

from scaling import (ScalingError, coefficient_warning, resolve_coefficients, round_resolution,
                     scale_depth, scaling_factors)


def test_round_resolution_is_nearest_multiple_of_8():
    assert [round_resolution(224 * 1.15 ** phi) for phi in range(4)] == [224, 256, 296, 344]
    assert round_resolution(12) == 16 and round_resolution(11.9) == 8 and round_resolution(1) == 8


def test_depth_is_rounded_up_per_stage_without_float_noise():
    assert scale_depth(1, 1.1) == 2 and scale_depth(3, 1.2) == 4 and scale_depth(4, 3.1) == 13
    assert scale_depth(3, 8 ** (1 / 3)) == 6  # 2.0000000000000004 would give 7 with a bare ceil
    assert scale_depth(5, 1.0) == 5


def test_compound_and_single_dimension_factors():
    f = scaling_factors(2, "compound")
    assert (f.depth, f.width, f.resolution) == pytest.approx((1.44, 1.21, 1.3225))
    f = scaling_factors(3, "compound", alpha=1.0, beta=1.0, gamma=1.2)
    assert (f.depth, f.width, f.resolution) == pytest.approx((1.0, 1.0, 1.728))
    for method, expected in [("width", (1, 2 ** 1.5, 1)), ("depth", (8, 1, 1)),
                             ("resolution", (1, 1, 2 ** 1.5))]:
        f = scaling_factors(3, method)
        assert (f.depth, f.width, f.resolution) == pytest.approx(expected)
        assert f.depth * f.width ** 2 * f.resolution ** 2 == pytest.approx(8)


@pytest.mark.parametrize("a", [0.0, 1 / 3, 0.8, 1.0])
def test_fast_factors_keep_flops_and_follow_the_activation_law(a):
    f = scaling_factors(4, "fast", alpha=a)
    assert f.depth * f.width ** 2 * f.resolution ** 2 == pytest.approx(16)
    # activations ~ d w r^2 (Dollar et al. 2021): s^(1 - a/2)
    assert f.depth * f.width * f.resolution ** 2 == pytest.approx(16 ** (1 - a / 2))
    if a == pytest.approx(1 / 3):
        assert f.depth == pytest.approx(f.width ** 2) and f.width == pytest.approx(f.resolution)


def test_coefficients_are_checked_per_method():
    assert resolve_coefficients("compound") == {"alpha": 1.2, "beta": 1.1, "gamma": 1.15}
    assert resolve_coefficients("fast") == {"alpha": 0.8}
    assert resolve_coefficients("official") == {}
    for method, kwargs, message in [
        ("fast", {"alpha": 1.5}, "alpha in \\[0, 1\\]"),
        ("fast", {"gamma": 1.1}, "only alpha"),
        ("official", {"beta": 1.1}, "takes no coefficients"),
        ("compound", {"beta": 0.9}, ">= 1"),
        ("compound", {"alpha": math.inf}, "finite"),
        ("magic", {}, "unknown scaling method"),
    ]:
        with pytest.raises(ScalingError, match=message):
            resolve_coefficients(method, **kwargs)
    with pytest.raises(ScalingError, match="phi >= 0"):
        scaling_factors(-1)
    with pytest.raises(ScalingError, match="too large"):
        scaling_factors(5000, "width")


def test_warning_when_the_product_is_far_from_two():
    assert coefficient_warning(1.2, 1.1, 1.15) is None  # 1.92, within 10%
    message = coefficient_warning(1.5, 1.1, 1.15)
    assert message and "2.400" in message
    assert coefficient_warning(1.0, 1.0, 1.0) is not None


def test_fast_scaling_rounds_depth_to_nearest():
    # a = 0.8, phi 1: depth 2^0.1 = 1.07. Rounded up, every stage of B0 would gain a layer.
    assert scaling_factors(1, "fast", alpha=0.8).nearest_depth
    assert not scaling_factors(1, "compound").nearest_depth
    assert scale_depth(4, 2 ** 0.1, nearest=True) == 4 and scale_depth(4, 2 ** 0.1) == 5
    assert scale_depth(2, 1.26, nearest=True) == 3 and scale_depth(1, 0.4, nearest=True) == 1
