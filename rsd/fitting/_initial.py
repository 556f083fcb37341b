"""The starting point of the rate fits: a least-squares estimate with no ODE solve.

The theory's field is linear in the rates, dz/dt = η_h·A(z) + η_y·B(z), so
z(t) − z(0) = η_h·∫A + η_y·∫B along the recorded trajectory: (η_h, η_y) follow from
linear least squares on the trapezoid integrals. :func:`rsd.fitting.fit_rates` centres
its log-grid on this estimate.
"""

from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp

from .._validation import check_vector_field
from ..theory import vector_field
from ._inputs import _prepare

__all__ = ["initial_rates"]


def _integrated_features(data, ts, dx2, dy2, field=vector_field):
    """∫A dt and ∫B dt from ts[0] (trapezoid), where dz/dt = η_h·A(z) + η_y·B(z),
    and whether the field is linear in the rates at the data (always, for the theory's).

    For the theory's field A and B are written out; for another field they are the
    field at (η_h, η_y) = (1, 0) and (0, 1), and linearity is checked at every data
    point against the field at (0, 0) (must vanish) and at (2, 3) (must be 2A + 3B).
    """
    h, y, w = data[:, 0], data[:, 1], data[:, 2]
    if field is vector_field:
        safe_h = jnp.where(h > 0, h, 1.0)
        a = jnp.stack([-dx2 * w, -dx2 * w * y / safe_h, -0.5 * dx2 * (y + w) * w / safe_h], -1)
        b = jnp.stack([jnp.zeros_like(h), -w * h, -0.5 * (3.0 * w - y + dy2) * h], -1)
        linear = jnp.array(True)
    else:
        one, zero = jnp.ones((), data.dtype), jnp.zeros((), data.dtype)
        at = lambda eh, ey: jax.vmap(lambda t, z: field(t, z, (eh, ey, dx2, dy2)))(ts, data)
        a, b = at(one, zero), at(zero, one)
        f0, f23 = at(zero, zero), at(2.0 * one, 3.0 * one)
        finite = jnp.isfinite(a) & jnp.isfinite(b) & jnp.isfinite(f0) & jnp.isfinite(f23)
        a, b = jnp.where(finite, a, 0.0), jnp.where(finite, b, 0.0)
        f0, f23 = jnp.where(finite, f0, 0.0), jnp.where(finite, f23, 0.0)
        scale = jnp.abs(2.0 * a) + jnp.abs(3.0 * b)
        tol = 1e-6 if data.dtype == jnp.float64 else 1e-3
        linear = (jnp.all(jnp.abs(f23 - 2.0 * a - 3.0 * b) <= tol * scale + jnp.finfo(data.dtype).tiny)
                  & jnp.all(jnp.abs(f0) <= tol * (jnp.abs(a) + jnp.abs(b)) + jnp.finfo(data.dtype).tiny))
    dt = jnp.diff(ts)[:, None]

    def cumtrapz(f):
        inc = 0.5 * dt * (f[1:] + f[:-1])
        return jnp.concatenate([jnp.zeros_like(f[:1]), jnp.cumsum(inc, axis=0)])

    return cumtrapz(a), cumtrapz(b), linear


def _initial_rates(data, ts, dx2, dy2, field=vector_field):
    """Linear least squares of z(t) − z(0) = η_h·∫A + η_y·∫B over all steps and series.

    Non-positive or non-finite estimates fall back to one-series magnitudes
    (|Δh| / ∫dx2·|w|, |Δy| / ∫|w|·h), then to 1/(time span). A field that is not
    linear in the rates gets 1/(time span) for both. Returns [2] rates.
    """
    ia, ib, linear = _integrated_features(data, ts, dx2, dy2, field)
    dz = data - data[0]
    m = jnp.array([[jnp.sum(ia * ia), jnp.sum(ia * ib)], [jnp.sum(ia * ib), jnp.sum(ib * ib)]])
    rhs = jnp.array([jnp.sum(ia * dz), jnp.sum(ib * dz)])
    det = m[0, 0] * m[1, 1] - m[0, 1] ** 2
    safe_det = jnp.where(det > 0, det, 1.0)
    joint = jnp.array([m[1, 1] * rhs[0] - m[0, 1] * rhs[1],
                       m[0, 0] * rhs[1] - m[0, 1] * rhs[0]]) / safe_det
    joint = jnp.where(det > 0, joint, jnp.nan)

    span = ts[-1] - ts[0]
    mag_h = jnp.abs(dz[-1, 0]) / jnp.abs(ia[-1, 0])
    mag_y = jnp.abs(jnp.max(jnp.abs(dz[:, 1]))) / jnp.max(jnp.abs(ib[:, 1]))
    fallback = jnp.stack([mag_h, mag_y])
    good = lambda v: jnp.isfinite(v) & (v > 0) & linear
    rates = jnp.where(good(joint), joint, jnp.where(good(fallback), fallback, 1.0 / span))
    return rates


def initial_rates(h, y, w, dx2, dy2, *, ts=None, vector_field=vector_field):
    """The integrated-field least-squares estimate of (η_h, η_y) that seeds :func:`fit_rates`.

    Returns an array [..., 2] of rates per training step (no ODE solve involved).
    ``vector_field``: as in :func:`fit_rates` (a field not linear in the rates gives
    1/(time span) for both rates).
    """
    data, ts, dx2, dy2, batch = _prepare(h, y, w, dx2, dy2, ts, strict=True)
    check_vector_field("vector_field", vector_field, data.dtype)
    if data.shape[0] == 0:
        return jnp.zeros(batch + (2,), data.dtype)
    return _initial_rates_batch(data, ts, dx2, dy2, vector_field).reshape(batch + (2,))


@eqx.filter_jit
def _initial_rates_batch(data, ts, dx2, dy2, field):
    return jax.vmap(lambda d, x2, y2: _initial_rates(d, ts, x2, y2, field))(data, dx2, dy2)
