import math

import pytest

from scaling import (DEFAULT_CANDIDATES, Coefficients, ScalingError, family, grid_search,
                     scale)
from space import cost, presets

B0 = presets.get("efficientnet-b0")
BASE_FLOPS = cost(B0).flops


def _closest_to_double(genome):
    """A cheap deterministic score: how close the real multiply-adds are to 2x B0."""
    return -abs(math.log(cost(genome).flops / (2 * BASE_FLOPS)))


def test_grid_search_rows_and_choice():
    result = grid_search(B0, _closest_to_double)
    assert len(result.rows) == 30  # of 6^3 triples, those within 5% of 2
    assert all(abs(row.product - 2) <= 0.1 for row in result.rows)
    assert (1.2, 1.1, 1.15) in [(r.alpha, r.beta, r.gamma) for r in result.rows]
    best = max(result.rows, key=lambda row: row.score)
    assert result.best == best
    assert best.flops == cost(scale(B0, 1, alpha=best.alpha, beta=best.beta,
                                    gamma=best.gamma)).flops
    assert abs(best.flops / (2 * BASE_FLOPS) - 1) < 0.05
    assert result.coefficients == Coefficients(alpha=best.alpha, beta=best.beta, gamma=best.gamma)


def test_ties_go_to_the_product_nearest_the_target_and_nan_never_wins():
    result = grid_search(B0, lambda genome: 1.0, candidates=(1.0, 1.1, 1.2, 1.3, 1.4),
                         tolerance=0.1)
    assert result.best.product == min((r.product for r in result.rows),
                                      key=lambda p: abs(p - 2))
    scores = iter([math.nan, 0.5] + [0.1] * 100)
    result = grid_search(B0, lambda genome: next(scores))
    assert result.best == result.rows[1]
    with pytest.raises(ScalingError, match="no finite score"):
        grid_search(B0, lambda genome: math.nan, candidates=(1.0, 1.2, 1.3), tolerance=0.2)


def test_bad_grid_arguments():
    with pytest.raises(ScalingError, match="no \\(alpha, beta, gamma\\)"):
        grid_search(B0, _closest_to_double, candidates=(1.0,))
    with pytest.raises(ScalingError, match=">= 1"):
        grid_search(B0, _closest_to_double, candidates=(0.9, 1.2))
    with pytest.raises(ScalingError, match="tolerance"):
        grid_search(B0, _closest_to_double, tolerance=-0.1)
    assert DEFAULT_CANDIDATES[0] == 1.0


def test_coefficient_file_round_trip(tmp_path):
    coefficients = Coefficients(alpha=1.2, beta=1.1, gamma=1.15)
    path = tmp_path / "coefficients.json"
    path.write_text(coefficients.to_json())
    loaded = Coefficients.from_json(path)
    assert loaded == coefficients and loaded.product == pytest.approx(1.92027)
    assert family(B0, [3], **loaded.to_dict())[0].genome == scale(B0, 3)
    for text, message in [('{"alpha": 1.2, "beta": 1.1}', "exactly the keys"),
                          ('{"alpha": 1.2, "beta": 1.1, "gamma": "x"}', "finite number"),
                          ('{"alpha": 0.5, "beta": 1.1, "gamma": 1.1}', ">= 1"),
                          ("[1, 2, 3]", "exactly the keys"), ("{", "not valid JSON")]:
        path.write_text(text)
        with pytest.raises(ScalingError, match=message):
            Coefficients.from_json(path)
    with pytest.raises(ScalingError, match="does not exist"):
        Coefficients.from_json(tmp_path / "missing.json")
