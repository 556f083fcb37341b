"""The effective theory of representation learning dynamics (van Rossem & Saxe, ICML 2024).

State z = (h, y, w): squared representational distance, squared output distance
and alignment of a pair of inputs; time in training steps.
"""

from ._dynamics import (
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
from ._predicted import PredictedRates, predicted_rates
from ._solve import Solution, Status, solve

__all__ = [
    "vector_field",
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
    "LinearizedState",
    "LinearizedSolution",
    "linearized_vector_field",
    "linearized_observables",
    "linearized_balance",
    "solve_linearized",
    "predicted_distance_matrix",
    "structure_prediction",
    "matrix_correlation",
    "PredictedRates",
    "predicted_rates",
]
