"""The 3-D effective theory (DESIGN.md §1): vector field, invariant, end states, loss.

State z = (h, y, w) on the last axis; time is measured in training steps.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._validation import check_broadcast, check_nonnegative, check_positive

__all__ = [
    "vector_field",
    "invariant",
    "final_distance",
    "rich_limit",
    "lazy_limit",
    "loss_curve",
]


def vector_field(t, z, args):
    """dz/dt of the effective theory, diffrax signature ``(t, y, args)``.

    With args = (eta_h, eta_y, dx2, dy2):

        dh/dt = -η_h·dx2·w
        dy/dt = -w·(η_y·h + η_h·dx2·y/h)
        dw/dt = -½·η_y·(3w - y + dy2)·h - ½·η_h·dx2·(y + w)·w/h
    """
    del t
    eta_h, eta_y, dx2, dy2 = args
    h, y, w = z[..., 0], z[..., 1], z[..., 2]
    a = eta_h * dx2
    dh = -a * w
    dy = -w * (eta_y * h + a * y / h)
    dw = -0.5 * eta_y * (3.0 * w - y + dy2) * h - 0.5 * a * (y + w) * w / h
    return jnp.stack([dh, dy, dw], axis=-1)


def invariant(z, eta_h, eta_y, dx2):
    """C = h - (η_h·dx2/η_y)·y/h, conserved along every solution."""
    z = jnp.asarray(z)
    h, y = z[..., 0], z[..., 1]
    return h - (eta_h * dx2 / eta_y) * y / h


def final_distance(h0, y0, eta_h, eta_y, dx2, dy2):
    """h∞ = C/2 + sqrt(C²/4 + k·dy2), k = η_h·dx2/η_y: the end state at a perfect fit.

    Written as k·dy2 / (sqrt(C²/4 + k·dy2) - C/2) when C < 0 so that the lazy
    limit with a large negative C loses no digits.
    """
    _check_rates(eta_h=eta_h, eta_y=eta_y, dx2=dx2, dy2=dy2)
    check_positive("h0", h0)
    check_nonnegative("y0", y0)
    check_broadcast({"h0": jnp.shape(h0), "y0": jnp.shape(y0), "eta_h": jnp.shape(eta_h),
                     "eta_y": jnp.shape(eta_y), "dx2": jnp.shape(dx2), "dy2": jnp.shape(dy2)})
    return _final_distance(h0, y0, eta_h, eta_y, dx2, dy2)


def _final_distance(h0, y0, eta_h, eta_y, dx2, dy2):
    k = eta_h * dx2 / eta_y
    c = h0 - k * y0 / h0
    root = jnp.sqrt(0.25 * c * c + k * dy2)
    positive = c >= 0
    # Double where: each branch only sees arguments for which it is finite.
    denom = jnp.where(positive, 1.0, root - 0.5 * c)
    return jnp.where(positive, 0.5 * c + root, k * dy2 / denom)


def rich_limit(eta_h, eta_y, dx2, dy2):
    """h∞ as h0, y0 → 0: sqrt(η_h/η_y·dx2·dy2), the geometric mean of input and output distance."""
    _check_rates(eta_h=eta_h, eta_y=eta_y, dx2=dx2, dy2=dy2)
    return jnp.sqrt(eta_h / eta_y * dx2 * dy2)


def lazy_limit(h0):
    """h∞ for large initial weights: the representation barely moves, h∞ ≈ h0."""
    check_positive("h0", h0)
    return jnp.asarray(h0)


def loss_curve(ts, z, dy2, eta_mean, e0):
    """L(t) = ¼·(2·e^(-2·η_ȳ·t)·e0 + w + ½·(dy2 - y)) for one-dimensional output.

    ``z`` holds (h, y, w) at the times ``ts`` (shape [..., len(ts), 3]); t is the
    number of training steps since the start, and ``e0`` the mean-output error at t = 0.
    """
    check_nonnegative("dy2", dy2)
    check_positive("eta_mean", eta_mean)
    check_nonnegative("e0", e0)
    z = jnp.asarray(z)
    ts = jnp.asarray(ts)
    y, w = z[..., 1], z[..., 2]
    eta_mean = jnp.asarray(eta_mean)[..., None]
    e0 = jnp.asarray(e0)[..., None]
    dy2 = jnp.asarray(dy2)[..., None]
    return 0.25 * (2.0 * jnp.exp(-2.0 * eta_mean * ts) * e0 + w + 0.5 * (dy2 - y))


def _check_rates(**named):
    for name in ("eta_h", "eta_y", "dx2"):
        if name in named:
            check_positive(name, named[name])
    if "dy2" in named:
        check_nonnegative("dy2", named["dy2"])
