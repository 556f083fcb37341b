"""The effective theory of representation learning dynamics (van Rossem & Saxe, ICML 2024).

State z = (h, y, w): squared representational distance, squared output distance
and alignment of a pair of inputs; time in training steps.

The theory knows nothing of networks (rsd's layering: ``theory`` is below
``fitting``, which reads networks and recorded trajectories). Its solve core —
:func:`solve_trajectory`, :func:`default_tolerances`, :data:`H_FLOOR` — is public so
that the fits solve the theory exactly as :func:`solve` does.
"""

from ._dynamics import (
    WeightedField,
    final_distance,
    invariant,
    lazy_limit,
    loss_curve,
    perturbed_vector_fields,
    rich_limit,
    vector_field,
    vector_field_dh_doubled,
    vector_field_dw_eta_h_flipped,
    vector_field_dy_doubled,
    vector_field_dy_eta_h_dropped,
)
from ._linearized import (
    LinearizedSolution,
    LinearizedState,
    linearized_balance,
    linearized_observables,
    linearized_vector_field,
    solve_linearized,
)
from ._pairwise import matrix_correlation, predicted_distance_matrix, structure_prediction
from ._solve import H_FLOOR, Solution, Status, Trajectory, default_tolerances, solve, solve_trajectory

__all__ = [
    "vector_field",
    "WeightedField",
    "vector_field_dy_doubled",
    "vector_field_dh_doubled",
    "vector_field_dw_eta_h_flipped",
    "vector_field_dy_eta_h_dropped",
    "perturbed_vector_fields",
    "invariant",
    "final_distance",
    "rich_limit",
    "lazy_limit",
    "loss_curve",
    "solve",
    "Solution",
    "Status",
    "solve_trajectory",
    "Trajectory",
    "default_tolerances",
    "H_FLOOR",
    "LinearizedState",
    "LinearizedSolution",
    "linearized_vector_field",
    "linearized_observables",
    "linearized_balance",
    "solve_linearized",
    "predicted_distance_matrix",
    "structure_prediction",
    "matrix_correlation",
]

_MOVED = {"predicted_rates": "rsd.fitting.predicted_rates", "PredictedRates": "rsd.fitting.PredictedRates"}


def __getattr__(name):
    # Predicted rates read a network, so they live above the theory, in rsd.fitting.
    if name in _MOVED:
        raise AttributeError(f"rsd.theory.{name} has moved to {_MOVED[name]} (rates predicted from a "
                             f"network belong above the theory): use `from rsd.fitting import {name}`.")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
