"""How an architecture grows: compound, published-table and fast scaling.

``scale(genome, phi, method)`` gives one member, ``family(genome, phis, method)`` the
members with their multipliers and costs, ``grid_search`` the compound coefficients.
Imports only :mod:`space`.
"""

from .factors import (DEFAULT_COMPOUND, DEFAULT_FAST_ALPHA, METHODS, OFFICIAL_TABLE, Factors,
                      ScalingError, coefficient_warning, resolve_coefficients,
                      round_resolution, scale_depth, scaling_factors)
from .budget import MAX_BUDGET_PHI, phi_for_budget
from .grid import DEFAULT_CANDIDATES, Coefficients, GridResult, GridRow, grid_search
from .scaler import Member, family, member_name, scale

__all__ = ["scale", "family", "Member", "member_name", "METHODS", "OFFICIAL_TABLE",
           "DEFAULT_COMPOUND", "DEFAULT_FAST_ALPHA", "Factors", "ScalingError",
           "scaling_factors", "resolve_coefficients", "coefficient_warning",
           "round_resolution", "scale_depth", "grid_search", "GridResult", "GridRow",
           "Coefficients", "DEFAULT_CANDIDATES", "phi_for_budget", "MAX_BUDGET_PHI"]
