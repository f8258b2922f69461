"""The noise verdict: binomial standard errors and whether a lead is beyond them."""

import math

import pytest

from nas.noise import binomial_standard_error, combined_standard_error, verdict


def test_binomial_standard_error_of_an_accuracy():
    # 87% on 5,000 images: +-0.4756 points, the figure the search's docs quote.
    assert binomial_standard_error(0.87, 5000) == pytest.approx(math.sqrt(0.87 * 0.13 / 5000))
    assert binomial_standard_error(0.87, 5000) == pytest.approx(0.004756, abs=1e-6)
    assert binomial_standard_error(1.0, 100) == 0.0
    with pytest.raises(ValueError):
        binomial_standard_error(0.5, 0)
    with pytest.raises(ValueError):
        binomial_standard_error(1.2, 10)


def test_combined_error_is_the_error_of_a_difference():
    assert combined_standard_error(0.003, 0.004) == pytest.approx(0.005)


def test_scores_closer_than_their_standard_errors_are_within_noise():
    # 85.76% vs 85.58% on 5,000 images each: a 0.18-point lead, errors of ~0.49 points each.
    a_error = binomial_standard_error(0.8576, 5000)
    b_error = binomial_standard_error(0.8558, 5000)
    result = verdict(0.8576, a_error, 0.8558, b_error)
    assert result.beyond_noise is False
    assert result.lead == pytest.approx(0.0018)
    assert result.standard_error == pytest.approx(math.hypot(a_error, b_error))
    assert result.text.startswith("within noise")


def test_a_lead_beyond_the_combined_errors_is_beyond_noise():
    result = verdict(0.90, 0.004, 0.88, 0.004)
    assert result.beyond_noise is True
    assert result.text.startswith("beyond noise")
    # The same lead fails a stricter z: 0.02 < 4 x 0.00566.
    assert verdict(0.90, 0.004, 0.88, 0.004, z=4).beyond_noise is False


def test_a_lead_equal_to_the_error_is_within_noise_and_unknown_noise_says_so():
    assert verdict(0.5, 0.03, 0.45, 0.04).beyond_noise is False  # lead 0.05 == sqrt(.03²+.04²)
    unknown = verdict(3.0, None, 2.0, 0.1)
    assert unknown.beyond_noise is None and "noise unknown" in unknown.text
    # A trailing "leader" is never beyond noise.
    assert verdict(0.80, 0.001, 0.90, 0.001).beyond_noise is False


def test_every_evaluator_states_its_noise_or_that_it_is_unknown():
    from nas.evaluators import make_evaluator

    proxy = make_evaluator("proxy-train", val_size=400, subset=300, resolution=16)
    assert proxy.noise(0.87) == pytest.approx(math.sqrt(0.87 * 0.13 / 400))
    # A zero-cost score has no measured spread yet: None, never a made-up number.
    assert make_evaluator("naswot", val_size=400, resolution=16).noise(1234.5) is None
