"""Estimates of the effective theory's rates, from recorded trajectories or from a network.

(η_h, η_y) by least squares of (h, y, w) over every step through a diffrax solve
(also for a batch with masked elements); η_ȳ from the loss curve; mean and bootstrap
spread of rates over seeds; the rates predicted from a network's own steps (first
order, or secant over a few real steps), and the constant rates a fit would report
for rates that vary in time. rsd's layering puts this package above both
``rsd.theory`` and ``rsd.networks``.
"""

from ._initial import initial_rates
from ._loss_rate import LossRateFit, fit_loss_rate
from ._masked import NOT_FITTED, MaskedRateFit, fit_rates_masked
from ._predicted import PredictedRates, predicted_rates
from ._rates import FitStatus, RateFit, fit_layers, fit_objective, fit_rates
from ._secant import secant_rates
from ._summary import RateSummary, summarize_rates
from ._weighted import WeightedRates, varying_rate_trajectory, weighted_rates

__all__ = [
    "FitStatus",
    "RateFit",
    "fit_rates",
    "fit_layers",
    "fit_objective",
    "initial_rates",
    "MaskedRateFit",
    "fit_rates_masked",
    "NOT_FITTED",
    "LossRateFit",
    "fit_loss_rate",
    "RateSummary",
    "summarize_rates",
    "PredictedRates",
    "predicted_rates",
    "secant_rates",
    "WeightedRates",
    "weighted_rates",
    "varying_rate_trajectory",
]
