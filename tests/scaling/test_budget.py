import pytest

from scaling import ScalingError, phi_for_budget, scale
from space import cost, presets

B0 = presets.get("efficientnet-b0")


def flops(genome):
    return cost(genome).flops


@pytest.mark.parametrize("method", ["compound", "fast"])
def test_largest_member_under_each_budget(method):
    base = flops(B0)
    for factor in (1.5, 3.0, 10.0):
        phi, predicted = phi_for_budget(B0, factor * base, flops, method)
        assert predicted == flops(scale(B0, phi, method)) <= factor * base
        # The next step of the grid no longer fits (the budget is used, not undershot).
        assert flops(scale(B0, round(phi + 0.01, 2), method)) > factor * base


def test_official_table_steps_are_whole_members():
    phi, _ = phi_for_budget(B0, 1.1e9, flops, "official")
    assert phi == 2 and flops(scale(B0, 3, "official")) > 1.1e9


def test_budgets_out_of_reach_say_why():
    with pytest.raises(ScalingError, match="below the base genome's own 385814752"):
        phi_for_budget(B0, 1e6, flops, describe="{:.0f}".format)
    with pytest.raises(ScalingError, match="largest member"):
        phi_for_budget(B0, 1e30, flops, "official")


def test_a_cost_bump_between_doublings_does_not_hide_larger_members_that_fit():
    # As the latency table priced 232 px above 248 px: members at 232 px cost 1.5x more,
    # so phi 0.16 and 0.32 are over the budget and phi 0.64 (248 px, 2.11x) is under it.
    def bumpy(genome):
        return flops(genome) * (1.5 if genome.resolution == 232 else 1.0)

    budget = 2.5 * flops(B0)
    phi, predicted = phi_for_budget(B0, budget, bumpy, "compound")
    assert scale(B0, phi, "compound").resolution > 232
    assert predicted == bumpy(scale(B0, phi, "compound")) <= budget
