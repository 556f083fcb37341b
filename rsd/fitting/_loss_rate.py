"""Fit of the mean-output rate η_ȳ to a recorded loss curve."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._batching import bucket, pad_rows
from .._validation import as_array, check_increasing, check_int_range, check_nonnegative
from ..theory import loss_curve
from ._lm import init_state, levenberg_marquardt
from ._rates import FitStatus, _r2

__all__ = ["LossRateFit", "fit_loss_rate"]


class LossRateFit(eqx.Module):
    """Result of :func:`fit_loss_rate`, leading shape of the inputs.

    ``eta_mean``: η_ȳ per training step. ``loss``: Σ_t (L(t) − L̂(t))², the residual
    at the fit. ``r2``: 1 − SS_res/SS_tot of the loss series (NaN for a constant
    series, with the tolerance of :class:`rsd.fitting.RateFit`). ``status``:
    :class:`FitStatus` (``BAD_DATA``: non-finite loss or zs, or e0/dy2 of this
    element not finite and ≥ 0; rate NaN, loss inf).
    """

    eta_mean: jax.Array
    loss: jax.Array
    r2: jax.Array
    status: jax.Array

    @property
    def ok(self):
        return self.status == FitStatus.OK


def fit_loss_rate(loss, zs, dy2, e0, *, ts=None, grid_size: int = 64,
                  max_iterations: int = 50) -> LossRateFit:
    """Fit η_ȳ in L(t) = ¼·(2·e^(−2·η_ȳ·t)·e0 + w + ½·(dy2 − y)) to a loss curve.

    ``loss`` [..., T] and ``zs`` [..., T, 3] (recorded h, y, w) per step, ``dy2`` and
    ``e0`` (mean-output error at ts[0]) broadcast over the leading shape; ``ts``
    defaults to 0..T−1 (training steps). Least squares in log η_ȳ: a log-grid of
    ``grid_size`` points over η_ȳ·(t_end − t_0) ∈ [10⁻³, 10³·T] then
    Levenberg–Marquardt. A curve with e0 = 0 carries no information on η_ȳ: status
    NOT_CONVERGED at the grid's best point.

    One element's invalid data (non-finite loss or zs; array-valued e0 or dy2 not
    finite and ≥ 0) gives it status BAD_DATA, never an exception; options, ``ts``,
    shapes and 0-d e0/dy2 are checked on the host (``ValueError`` naming the
    argument). Batches are padded to power-of-two buckets (no recompilation within a
    bucket); an empty batch returns empty results. Determinism as in
    :func:`rsd.fitting.fit_rates`.
    """
    loss, zs = as_array("loss", loss), as_array("zs", zs)
    dy2, e0 = as_array("dy2", dy2), as_array("e0", e0)
    if zs.ndim < 2 or zs.shape[-1] != 3:
        raise ValueError(f"zs must have shape [..., T, 3] holding (h, y, w); got {zs.shape}.")
    if loss.ndim < 1 or loss.shape[-1] != zs.shape[-2]:
        raise ValueError(f"loss [..., T] and zs [..., T, 3] must have the same number of steps; "
                         f"got loss {loss.shape} and zs {zs.shape}.")
    n_times = loss.shape[-1]
    if n_times < 3:
        raise ValueError(f"the loss curve must have at least 3 steps; got {n_times}.")
    check_int_range("grid_size", grid_size, 1)
    check_int_range("max_iterations", max_iterations, 1)
    # 0-d values apply to every element; arrays are per element (BAD_DATA).
    if dy2.ndim == 0:
        check_nonnegative("dy2", dy2)
    if e0.ndim == 0:
        check_nonnegative("e0", e0)
    dtype = jnp.promote_types(jnp.result_type(loss, zs), jnp.float32)
    if ts is None:
        ts = jnp.arange(n_times, dtype=dtype)
    else:
        ts = as_array("ts", ts)
        if ts.shape != (n_times,):
            raise ValueError(f"ts must have shape ({n_times},); got {ts.shape}.")
        ts = ts.astype(dtype)
        check_increasing("ts", ts)
    try:
        batch = tuple(int(d) for d in np.broadcast_shapes(loss.shape[:-1], zs.shape[:-2],
                                                          dy2.shape, e0.shape))
    except ValueError:
        raise ValueError(f"leading shapes do not broadcast: loss {loss.shape[:-1]}, zs {zs.shape[:-2]}, "
                         f"dy2 {dy2.shape}, e0 {e0.shape}.") from None
    n = int(np.prod(batch))
    if n == 0:
        nan = jnp.full(batch, jnp.nan, dtype)
        return LossRateFit(eta_mean=nan, loss=nan, r2=nan, status=jnp.zeros(batch, jnp.int32))
    flat = lambda a, tail: jnp.broadcast_to(a.astype(dtype), batch + tail).reshape((n,) + tail)
    args = pad_rows((flat(loss, (n_times,)), flat(zs, (n_times, 3)), flat(dy2, ()), flat(e0, ())),
                    bucket(n))
    fit = _fit_loss_batch(*args, ts, grid_size=grid_size, max_iterations=max_iterations)
    return jax.tree_util.tree_map(lambda a: a[:n].reshape(batch), fit)


@functools.partial(jax.jit, static_argnames=("grid_size", "max_iterations"))
def _fit_loss_batch(loss, zs, dy2, e0, ts, *, grid_size, max_iterations):
    # Under jit the host check of ts cannot run: bad times make every element BAD_DATA.
    ts_ok = jnp.all(jnp.isfinite(ts)) & jnp.all(jnp.diff(ts) > 0)
    ts = jnp.where(ts_ok, ts, jnp.arange(ts.shape[0], dtype=ts.dtype))
    span = ts[-1] - ts[0]
    # η·span from 1e-3 (barely decays) to 1e3·T (gone after the first step).
    grid = jnp.linspace(jnp.log(1e-3 / span), jnp.log(1e3 * ts.shape[0] / span), grid_size)
    tol = 1e-8 if loss.dtype == jnp.float64 else 1e-4

    def one(l, z, d, e):
        valid = (jnp.all(jnp.isfinite(l)) & jnp.all(jnp.isfinite(z)) & jnp.isfinite(d) & (d >= 0)
                 & jnp.isfinite(e) & (e >= 0) & ts_ok)
        # Invalid elements are fitted on a harmless stand-in and masked.
        l, z = jnp.where(valid, l, 0.0), jnp.where(valid, z, 0.0)
        d, e = jnp.where(valid, d, 0.0), jnp.where(valid, e, 0.0)

        def fun(theta):
            # Time counts from the first recorded step, where e0 was measured.
            return loss_curve(ts - ts[0], z, d, jnp.exp(theta[0]), e) - l, jnp.array(True)

        losses = jax.vmap(lambda g: jnp.sum(fun(g[None])[0] ** 2))(grid)
        state = levenberg_marquardt(fun, init_state(grid[jnp.argmin(losses)][None], ts.shape[0]),
                                    max_iterations=max_iterations, xtol=tol, ftol=tol)
        informative = e > 0
        status = jnp.where(~valid, FitStatus.BAD_DATA,
                           jnp.where(~state.ok, FitStatus.SOLVER_FAILED,
                                     jnp.where(state.converged & informative, FitStatus.OK,
                                               FitStatus.NOT_CONVERGED)))
        return LossRateFit(
            eta_mean=jnp.where(valid, jnp.exp(state.theta[0]), jnp.nan),
            loss=jnp.where(valid, state.loss, jnp.inf),
            r2=jnp.where(valid, _r2(state.residual[:, None], l[:, None])[0], jnp.nan),
            status=status.astype(jnp.int32),
        )

    return jax.vmap(one)(loss, zs, dy2, e0)
