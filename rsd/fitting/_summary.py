"""Mean, spread and bootstrap confidence interval of fitted rates over seeds."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validation import check_int_range
from ._loss_rate import LossRateFit
from ._rates import FitStatus, RateFit

__all__ = ["RateSummary", "summarize_rates"]


class RateSummary(eqx.Module):
    """Statistics of one rate over the seed axis (fits with a bad status masked out).

    ``mean`` and ``std`` (sample standard deviation, ddof=1) of the rate;
    [``ci_low``, ``ci_high``]: percentile-bootstrap confidence interval of the mean;
    ``n_ok``: number of fits used. NaN where no fit is usable.
    """

    mean: jax.Array
    std: jax.Array
    ci_low: jax.Array
    ci_high: jax.Array
    n_ok: jax.Array


def summarize_rates(fit, ok=None, *, axis: int = 0, confidence: float = 0.95,
                    num_resamples: int = 2000, key=None):
    """Mean ± spread of fitted rates over ``axis`` (seeds) with a bootstrap CI of the mean.

    ``fit``: a :class:`RateFit` (returns ``{"eta_h": RateSummary, "eta_y": RateSummary}``),
    a :class:`LossRateFit` (``{"eta_mean": ...}``) or an array of rates with an optional
    boolean ``ok`` mask (returns one :class:`RateSummary`). Fits whose status is not
    OK are left out of every statistic. ``key`` defaults to ``jax.random.key(0)``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")
    check_int_range("num_resamples", num_resamples, 1)
    key = jax.random.key(0) if key is None else key
    if isinstance(fit, RateFit):
        mask = fit.status == FitStatus.OK
        return {name: _summarize(getattr(fit, name), mask, axis, confidence, num_resamples, key)
                for name in ("eta_h", "eta_y")}
    if isinstance(fit, LossRateFit):
        mask = fit.status == FitStatus.OK
        return {"eta_mean": _summarize(fit.eta_mean, mask, axis, confidence, num_resamples, key)}
    values = jnp.asarray(fit)
    mask = jnp.ones(values.shape, bool) if ok is None else jnp.broadcast_to(jnp.asarray(ok, bool), values.shape)
    if values.ndim == 0:
        raise ValueError("summarize_rates needs an axis of seeds; got a scalar.")
    return _summarize(values, mask, axis, confidence, num_resamples, key)


def _summarize(values, mask, axis, confidence, num_resamples, key):
    values = jnp.moveaxis(jnp.asarray(values), axis, -1)
    mask = jnp.moveaxis(mask, axis, -1) & jnp.isfinite(values)
    return _stats(values, mask, key, confidence, num_resamples)


@eqx.filter_jit
def _stats(values, mask, key, confidence, num_resamples):
    n = values.shape[-1]
    safe = jnp.where(mask, values, 0.0)
    count = jnp.sum(mask, -1)
    mean = jnp.sum(safe, -1) / jnp.where(count > 0, count, 1)
    dev = jnp.where(mask, values - mean[..., None], 0.0)
    std = jnp.sqrt(jnp.sum(dev * dev, -1) / jnp.where(count > 1, count - 1, 1))
    # Resample seeds with replacement; failed seeds drawn into a resample are dropped.
    idx = jax.random.randint(key, (num_resamples, n), 0, n)
    take = lambda a: jnp.take(a, idx, axis=-1)            # [..., R, n]
    m = take(mask)
    c = jnp.sum(m, -1)
    boot = jnp.sum(jnp.where(m, take(values), 0.0), -1) / jnp.where(c > 0, c, 1)
    boot = jnp.where(c > 0, boot, jnp.nan)
    alpha = 0.5 * (1.0 - confidence)
    lo = jnp.nanquantile(boot, alpha, axis=-1)
    hi = jnp.nanquantile(boot, 1.0 - alpha, axis=-1)
    none = count == 0
    nan = lambda a: jnp.where(none, jnp.nan, a)
    return RateSummary(mean=nan(mean), std=jnp.where(count > 1, std, jnp.nan),
                       ci_low=nan(lo), ci_high=nan(hi), n_ok=count)
