"""Fit of the mean-output rate η_ȳ to a recorded loss curve."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_increasing, check_nonnegative, is_concrete
from ..theory._dynamics import loss_curve
from ._lm import init_state, levenberg_marquardt
from ._rates import FitStatus

__all__ = ["LossRateFit", "fit_loss_rate"]


class LossRateFit(eqx.Module):
    """Result of :func:`fit_loss_rate`, leading shape of the inputs.

    ``eta_mean``: η_ȳ per training step. ``loss``: Σ_t (L(t) − L̂(t))², the residual
    at the fit. ``r2``: 1 − SS_res/SS_tot of the loss series. ``status``: :class:`FitStatus`.
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
    defaults to 0..T−1 (training steps). Least squares in log η_ȳ: a log-grid over
    η_ȳ·(t_end − t_0) ∈ [10⁻³, 10³·T] then Levenberg–Marquardt. A curve with e0 = 0
    carries no information on η_ȳ: status NOT_CONVERGED at the grid's best point.
    """
    loss, zs = jnp.asarray(loss), jnp.asarray(zs)
    if zs.ndim < 2 or zs.shape[-1] != 3:
        raise ValueError(f"zs must have shape [..., T, 3] holding (h, y, w); got {zs.shape}.")
    if loss.ndim < 1 or loss.shape[-1] != zs.shape[-2]:
        raise ValueError(f"loss [..., T] and zs [..., T, 3] must have the same number of steps; "
                         f"got loss {loss.shape} and zs {zs.shape}.")
    n_times = loss.shape[-1]
    if n_times < 3:
        raise ValueError(f"the loss curve must have at least 3 steps; got {n_times}.")
    if is_concrete(loss, zs):
        for name, a in (("loss", loss), ("zs", zs)):
            if not np.all(np.isfinite(np.asarray(a))):
                raise ValueError(f"{name} must be finite; it holds NaN/inf values.")
    check_nonnegative("dy2", dy2)
    check_nonnegative("e0", e0)
    dtype = jnp.result_type(loss, zs, float)
    if ts is None:
        ts = jnp.arange(n_times, dtype=dtype)
    else:
        ts = jnp.asarray(ts, dtype)
        if ts.shape != (n_times,):
            raise ValueError(f"ts must have shape ({n_times},); got {ts.shape}.")
        check_increasing("ts", ts)
    try:
        batch = tuple(np.broadcast_shapes(loss.shape[:-1], zs.shape[:-2], jnp.shape(dy2), jnp.shape(e0)))
    except ValueError:
        raise ValueError(f"leading shapes do not broadcast: loss {loss.shape[:-1]}, zs {zs.shape[:-2]}, "
                         f"dy2 {jnp.shape(dy2)}, e0 {jnp.shape(e0)}.") from None
    n = int(np.prod(batch))
    flat = lambda a, tail: jnp.broadcast_to(jnp.asarray(a, dtype), batch + tail).reshape((n,) + tail)
    fit = _fit_loss_batch(flat(loss, (n_times,)), flat(zs, (n_times, 3)), flat(dy2, ()), flat(e0, ()),
                          ts, grid_size=grid_size, max_iterations=max_iterations)
    return jax.tree_util.tree_map(lambda a: a.reshape(batch), fit)


@functools.partial(jax.jit, static_argnames=("grid_size", "max_iterations"))
def _fit_loss_batch(loss, zs, dy2, e0, ts, *, grid_size, max_iterations):
    span = ts[-1] - ts[0]
    # η·span from 1e-3 (barely decays) to 1e3·T (gone after the first step).
    grid = jnp.linspace(jnp.log(1e-3 / span), jnp.log(1e3 * ts.shape[0] / span), grid_size)
    tol = 1e-8 if loss.dtype == jnp.float64 else 1e-4

    def one(l, z, d, e):
        def fun(theta):
            # loss_curve counts time from the first recorded step, where e0 was measured.
            return loss_curve(ts - ts[0], z, d, jnp.exp(theta[0]), e) - l, jnp.array(True)

        losses = jax.vmap(lambda g: jnp.sum(fun(g[None])[0] ** 2))(grid)
        state = levenberg_marquardt(fun, init_state(grid[jnp.argmin(losses)][None], ts.shape[0]),
                                    max_iterations=max_iterations, xtol=tol, ftol=tol)
        dev = l - jnp.mean(l)
        ss_tot = jnp.sum(dev * dev)
        informative = e > 0
        status = jnp.where(~state.ok, FitStatus.SOLVER_FAILED,
                           jnp.where(state.converged & informative, FitStatus.OK, FitStatus.NOT_CONVERGED))
        return LossRateFit(
            eta_mean=jnp.exp(state.theta[0]),
            loss=state.loss,
            r2=jnp.where(ss_tot > 0, 1.0 - state.loss / jnp.where(ss_tot > 0, ss_tot, 1.0), jnp.nan),
            status=status.astype(jnp.int32),
        )

    return jax.vmap(one)(loss, zs, dy2, e0)
