"""Fits of the effective theory's rates to recorded trajectories.

(η_h, η_y) by least squares of (h, y, w) over every step through a diffrax solve;
η_ȳ from the loss curve; mean and bootstrap spread of rates over seeds.
"""

from ._loss_rate import LossRateFit, fit_loss_rate
from ._rates import FitStatus, RateFit, fit_layers, fit_objective, fit_rates, initial_rates
from ._summary import RateSummary, summarize_rates

__all__ = [
    "FitStatus",
    "RateFit",
    "fit_rates",
    "fit_layers",
    "fit_objective",
    "initial_rates",
    "LossRateFit",
    "fit_loss_rate",
    "RateSummary",
    "summarize_rates",
]
