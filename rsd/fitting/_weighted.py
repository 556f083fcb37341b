"""The constant rates a fit would report, from rates that vary in time (docs/predicted-rates.md).

:func:`rsd.fitting.fit_rates` fits constant (η_h, η_y) to a trajectory by least
squares of (h, y, w) over every recorded step. When the rates the network follows
change along training (as the rates read off its steps do), the fitted constant is a
weighted average of them. With rates η_c given at knots t_0 < … < t_M and linear in
time between them, and K_c(t) = ∂z(t)/∂η_c ([3, 2], the theory's sensitivity to the
knot values, forward mode through the solve) evaluated at constant rates η̄,
S(t) = Σ_c K_c(t) = ∂z(t)/∂η̄; to first order in η_c − η̄ the constant-rate fit is

    η = (Σ_t S(t)ᵀS(t))⁻¹ Σ_t S(t)ᵀ Σ_c K_c(t)·η_c,

a weighted average Σ_c W_c·η_c with 2 × 2 weights W_c that sum to the identity. It
is iterated to a fixed point η̄ = η. Knots where the trajectory is insensitive to
the rates (e.g. after convergence, w ≈ 0) get no weight.
"""

from __future__ import annotations

from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._validation import (as_array, check_finite, check_increasing, check_int_range, check_nonnegative,
                           check_tolerance)
from ..theory import Status, default_tolerances, solve_trajectory, vector_field

__all__ = ["WeightedRates", "varying_rate_trajectory", "weighted_rates"]


class WeightedRates(NamedTuple):
    """Result of :func:`weighted_rates`, for one trajectory (leading axes when vmapped).

    ``eta_h``, ``eta_y``: the constant rates per step (NaN where a solve failed);
    ``weights``: [M + 1, 2, 2] the matrices W_c at the fixed point (Σ_c W_c = I, row
    = the constant rate, column = the knot rate); ``status``: ``rsd.theory.Status`` of
    the last solve; ``converged``: the last iteration moved the rates by < 1e-4 relative.
    """

    eta_h: jax.Array
    eta_y: jax.Array
    weights: jax.Array
    status: jax.Array
    converged: jax.Array


def _field(t, z, args):
    # State (h, y, w, τ) with dτ/dt = 1: the field is autonomous in it, so the solve's
    # Hermite interpolation (which evaluates the field without t) stays exact.
    knots, rates, dx2, dy2 = args
    tau = z[3]
    eta_h = jnp.interp(tau, knots, rates[:, 0])
    eta_y = jnp.interp(tau, knots, rates[:, 1])
    dz = vector_field(t, z[:3], (eta_h, eta_y, dx2, dy2))
    return jnp.concatenate([dz, jnp.ones((1,), dz.dtype)])


def _solve(z0, ts, knots, rates, dx2, dy2, rtol, atol, max_steps, forward):
    start = jnp.concatenate([z0, ts[:1]])
    out = solve_trajectory(start, ts, (knots, rates, dx2, dy2), field=_field, rtol=rtol, atol=atol,
                           max_steps=max_steps, h_floor=None,
                           adjoint=diffrax.ForwardMode() if forward else None)
    ok = (out.status == Status.OK) & jnp.all(jnp.isfinite(out.zs))
    return jnp.where(ok, out.zs[:, :3], z0), ok, out.status


def _check(z0, ts, knots, rates, dx2, dy2):
    z0, ts, knots, rates = (as_array(n, a) for n, a in (("z0", z0), ("ts", ts), ("knots", knots),
                                                       ("rates", rates)))
    if z0.shape != (3,):
        raise ValueError(f"z0 must be one state (h, y, w) of shape (3,) (vmap to batch); got {z0.shape}.")
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-d array of at least 2 times; got shape {ts.shape}.")
    if knots.ndim != 1 or knots.shape[0] < 2:
        raise ValueError(f"knots must be a 1-d array of at least 2 times; got shape {knots.shape}.")
    if rates.shape != (knots.shape[0], 2):
        raise ValueError(f"rates must have shape [len(knots), 2] = [{knots.shape[0]}, 2] holding "
                         f"(eta_h, eta_y) at each knot; got {rates.shape}.")
    for name, a in (("z0", z0), ("ts", ts), ("knots", knots), ("dx2", dx2), ("dy2", dy2)):
        check_finite(name, a)
    check_increasing("ts", ts)
    check_increasing("knots", knots)
    dtype = jnp.result_type(z0, ts, knots, rates, float)
    return tuple(jnp.asarray(a, dtype) for a in (z0, ts, knots, rates, dx2, dy2))


def varying_rate_trajectory(z0, ts, knots, rates, dx2, dy2, *, rtol=None, atol=None,
                            max_steps: int = 16384):
    """The theory's (h, y, w) at ``ts`` with rates that vary in time: [len(ts), 3], and its status.

    Solves dz/dt = field(z; η_h(t), η_y(t)) (``rsd.theory.vector_field``) from ``z0`` at
    ``ts[0]``, with (η_h, η_y)(t) interpolated linearly between ``rates`` [M + 1, 2] at
    ``knots`` [M + 1] (constant beyond the ends); time in training steps. ONE
    trajectory: vmap to batch. Returns ``(zs, status)`` with ``status`` an
    ``rsd.theory.Status`` (zs is z0 everywhere where the solve failed). Tolerances
    default as :func:`rsd.theory.solve`'s. Arguments are checked on the host
    (``ValueError`` naming them).
    """
    z0, ts, knots, rates, dx2, dy2 = _check(z0, ts, knots, rates, dx2, dy2)
    check_tolerance("rtol", rtol)
    check_tolerance("atol", atol)
    check_int_range("max_steps", max_steps, 1)
    rtol, atol = default_tolerances(z0.dtype, rtol, atol)
    zs, _, status = _trajectory(z0, ts, knots, rates, dx2, dy2, float(rtol), float(atol), int(max_steps))
    return zs, status


@eqx.filter_jit
def _trajectory(z0, ts, knots, rates, dx2, dy2, rtol, atol, max_steps):
    return _solve(z0, ts, knots, rates, dx2, dy2, rtol, atol, max_steps, forward=False)


def weighted_rates(z0, ts, knots, rates, dx2, dy2, *, time_weights=None, iterations: int = 4, rtol=None,
                   atol=None, max_steps: int = 16384) -> WeightedRates:
    """The constant (η_h, η_y) that a least-squares fit over ``ts`` would give, to first
    order, for the theory run with the time-varying ``rates``.

    With K_c(t) = ∂z(t)/∂η_c the sensitivity of the theory's (h, y, w) at time t to the
    rates at knot c (rates linear in time between ``knots``, as in
    :func:`varying_rate_trajectory`), taken at constant rates η̄, and S(t) = Σ_c K_c(t)::

        η = (Σ_t S(t)ᵀ S(t))⁻¹ Σ_t S(t)ᵀ Σ_c K_c(t)·η_c

    (the sum over every time of ``ts``, as :func:`rsd.fitting.fit_rates` minimises;
    with ``time_weights`` each time's term weighted by them). Starts at η̄ = the median
    of the knots' rates and repeats with η̄ = η, ``iterations`` times in all. Exact when
    every knot holds the same rates; otherwise the error is second order in the spread
    of the rates. ONE trajectory (vmap to batch).

    Args:
        z0: the trajectory's first state (h, y, w) [3], h > 0.
        ts: the fitted times [T] (training steps), increasing.
        knots: the times of the rates [M + 1], increasing (need not match ``ts``).
        rates: [M + 1, 2] (η_h, η_y) per step at each knot; inside jit, non-finite
            rates give NaN results, not errors.
        dx2: the pair's squared input distance.
        dy2: the pair's squared target distance.
        time_weights: optional [T] weights ≥ 0 of the times in the sum (e.g. 0 to leave
            padding out); default 1.
        iterations: evaluations of K (≥ 1).
        rtol: the solve's relative tolerance; default as the fits' (ten times tighter
            than :func:`rsd.theory.solve`'s in float64).
        atol: the solve's absolute tolerance; default likewise.
        max_steps: the solve's step budget.
    """
    z0, ts, knots, rates, dx2, dy2 = _check(z0, ts, knots, rates, dx2, dy2)
    if time_weights is None:
        time_weights = jnp.ones_like(ts)
    else:
        time_weights = as_array("time_weights", time_weights)
        if time_weights.shape != ts.shape:
            raise ValueError(f"time_weights must have the shape of ts {ts.shape}; got {time_weights.shape}.")
        check_finite("time_weights", time_weights)
        check_nonnegative("time_weights", time_weights)
        time_weights = time_weights.astype(ts.dtype)
    check_int_range("iterations", iterations, 1)
    check_tolerance("rtol", rtol)
    check_tolerance("atol", atol)
    check_int_range("max_steps", max_steps, 1)
    rtol, atol = default_tolerances(z0.dtype, rtol, atol, tighten=10.0)
    return _weighted_rates(z0, ts, knots, rates, dx2, dy2, time_weights, iterations=int(iterations),
                           rtol=float(rtol),
                           atol=float(atol), max_steps=int(max_steps))


@eqx.filter_jit
def _weighted_rates(z0, ts, knots, rates, dx2, dy2, time_weights, *, iterations, rtol, atol, max_steps):
    finite = jnp.all(jnp.isfinite(rates))
    safe = jnp.where(finite, rates, 1.0)
    m = knots.shape[0]

    def sensitivities(center):
        def zs_of(r):
            zs, ok, status = _solve(z0, ts, knots, r, dx2, dy2, rtol, atol, max_steps, forward=True)
            return zs, (ok, status)

        k, (ok, status) = jax.jacfwd(zs_of, has_aux=True)(jnp.broadcast_to(center, (m, 2)))
        return k, ok, status  # k: [T, 3, M + 1, 2]

    def step(carry, _):
        center, _, _, _ = carry
        k, ok, status = sensitivities(center)
        s = jnp.sum(k, axis=2)  # [T, 3, 2]
        gram = jnp.einsum("t,tia,tib->ab", time_weights, s, s)
        cross = jnp.einsum("t,tia,ticb->cab", time_weights, s, k)  # [M + 1, 2, 2]
        inv = jnp.linalg.inv(jnp.where(ok, gram, jnp.eye(2, dtype=gram.dtype)))
        weights = jnp.einsum("ab,cbd->cad", inv, cross)
        new = jnp.einsum("cab,cb->a", weights, safe)
        good = ok & jnp.all(jnp.isfinite(new))
        moved = jnp.max(jnp.abs(new - center) / jnp.abs(center))
        return (jnp.where(good, new, center), weights, status, good & (moved < 1e-4)), good

    center = jnp.median(safe, axis=0)
    init = (center, jnp.zeros((m, 2, 2), rates.dtype), jnp.asarray(Status.OK, jnp.int32), jnp.array(False))
    (eta, weights, status, converged), good = jax.lax.scan(step, init, None, length=iterations)
    ok = finite & good[-1]
    eta = jnp.where(ok, eta, jnp.nan)
    return WeightedRates(eta_h=eta[0], eta_y=eta[1], weights=jnp.where(ok, weights, jnp.nan),
                         status=jnp.where(finite, status, Status.FAILED).astype(jnp.int32),
                         converged=converged & ok)
