"""Mean, spread and bootstrap confidence interval of fitted rates over seeds."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validation import as_array, check_int_range, check_real
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
    An empty seed axis, an ``axis`` out of range or an ``ok`` of another shape
    raise ``ValueError`` naming the argument.
    """
    check_real("confidence", confidence, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    check_int_range("num_resamples", num_resamples, 1)
    key = jax.random.key(0) if key is None else key
    if isinstance(fit, RateFit):
        named = {"eta_h": fit.eta_h, "eta_y": fit.eta_y}
        mask = fit.status == FitStatus.OK
    elif isinstance(fit, LossRateFit):
        named = {"eta_mean": fit.eta_mean}
        mask = fit.status == FitStatus.OK
    else:
        values = as_array("fit", fit)
        if ok is None:
            mask = jnp.ones(values.shape, bool)
        else:
            ok = ok if isinstance(ok, jax.Array) else np.asarray(ok)
            if ok.dtype != np.bool_ and not np.issubdtype(ok.dtype, np.integer):
                raise ValueError(f"ok must be a boolean mask; got dtype {ok.dtype}.")
            ok = jnp.asarray(ok).astype(bool)
            try:
                mask = jnp.broadcast_to(ok, values.shape)
            except ValueError:
                raise ValueError(f"ok {ok.shape} must broadcast to the rates' shape "
                                 f"{values.shape}.") from None
        named = {"fit": values}
    shape = next(iter(named.values())).shape
    if len(shape) == 0:
        raise ValueError("summarize_rates needs an axis of seeds; got a scalar fit.")
    check_int_range("axis", axis, -len(shape), len(shape) - 1)
    if shape[axis] == 0:
        raise ValueError(f"fit must hold at least one seed along axis {axis}; got shape {shape}.")
    out = {name: _summarize(v, mask, axis, confidence, num_resamples, key) for name, v in named.items()}
    return out["fit"] if "fit" in out else out


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
