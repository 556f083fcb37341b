"""The 3-D effective theory: vector field, invariant, end states, loss.

State z = (h, y, w) on the last axis; time is measured in training steps.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._validation import (
    as_array,
    check_broadcast,
    check_finite,
    check_increasing,
    check_nonnegative,
    check_positive,
    is_concrete,
)

__all__ = [
    "vector_field",
    "WeightedField",
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
]


def vector_field(t, z, args):
    """dz/dt of the effective theory, diffrax signature ``(t, y, args)``.

    With args = (eta_h, eta_y, dx2, dy2):

        dh/dt = -η_h·dx2·w
        dy/dt = -w·(η_y·h + η_h·dx2·y/h)
        dw/dt = -½·η_y·(3w - y + dy2)·h - ½·η_h·dx2·(y + w)·w/h

    Args:
        t: time in training steps (unused: the field is autonomous).
        z: states (h, y, w) on the last axis, [..., 3], with h > 0.
        args: (η_h, η_y per training step, dx2, dy2), each broadcasting against z[..., 0].

    Returns:
        dz/dt [..., 3], per training step. Unchecked (it runs inside solvers);
        :func:`solve` checks its inputs.
    """
    del t
    eta_h, eta_y, dx2, dy2 = args
    h, y, w = z[..., 0], z[..., 1], z[..., 2]
    a = eta_h * dx2
    dh = -a * w
    dy = -w * (eta_y * h + a * y / h)
    dw = -0.5 * eta_y * (3.0 * w - y + dy2) * h - 0.5 * a * (y + w) * w / h
    return jnp.stack([dh, dy, dw], axis=-1)


def _terms(z, args):
    """The theory's terms, (dh, dy_η_y, dy_η_h, dw_η_y, dw_η_h): dz/dt is their sum."""
    eta_h, eta_y, dx2, dy2 = args
    h, y, w = z[..., 0], z[..., 1], z[..., 2]
    a = eta_h * dx2
    return (-a * w, -w * eta_y * h, -w * a * y / h,
            -0.5 * eta_y * (3.0 * w - y + dy2) * h, -0.5 * a * (y + w) * w / h)


class WeightedField(eqx.Module):
    """The theory's field with each of its five terms scaled by a weight, a callable
    with :func:`vector_field`'s signature ``(t, z, args)``, args = (eta_h, eta_y, dx2, dy2)::

        dh/dt = c_h·(-η_h·dx2·w)
        dy/dt = c_yy·(-w·η_y·h) + c_yh·(-w·η_h·dx2·y/h)
        dw/dt = c_wy·(-½·η_y·(3w - y + dy2)·h) + c_wh·(-½·η_h·dx2·(y + w)·w/h)

    All weights 1 is the theory. The weights are arrays, not constants of a program:
    under ``jax.jit`` (and in :func:`solve` and the fits of :mod:`rsd.fitting`) every
    ``WeightedField`` shares one compiled program, so the paper's four alternatives
    below compile once between them. Each field keeps the rates linear (dz/dt =
    η_h·A(z) + η_y·B(z)).

    Args:
        dh: c_h, the weight of dh/dt.
        dy_eta_y: c_yy, the weight of dy/dt's η_y term.
        dy_eta_h: c_yh, the weight of dy/dt's η_h term.
        dw_eta_y: c_wy, the weight of dw/dt's η_y term.
        dw_eta_h: c_wh, the weight of dw/dt's η_h term.
    """

    weights: np.ndarray  # [5]: c_h, c_yy, c_yh, c_wy, c_wh

    def __init__(self, dh=1.0, dy_eta_y=1.0, dy_eta_h=1.0, dw_eta_y=1.0, dw_eta_h=1.0):
        weights = (dh, dy_eta_y, dy_eta_h, dw_eta_y, dw_eta_h)
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and np.isfinite(c)
                   for c in weights):
            raise ValueError(f"WeightedField's weights must be finite real numbers; got {weights}.")
        self.weights = np.asarray(weights, np.float64)

    def __call__(self, t, z, args):
        del t
        c = jnp.asarray(self.weights, z.dtype)
        dh, dy_y, dy_h, dw_y, dw_h = _terms(z, args)
        return jnp.stack([c[0] * dh, c[1] * dy_y + c[2] * dy_h, c[3] * dw_y + c[4] * dw_h], axis=-1)


# The paper's "alternatives" experiment: four fields that differ from
# the theory in one term each, fitted to the same trajectories as the true one.

vector_field_dy_doubled = WeightedField(dy_eta_y=2.0, dy_eta_h=2.0)
"""Alternative (1), dy/dt doubled; args = (eta_h, eta_y, dx2, dy2):

    dh/dt = -η_h·dx2·w
    dy/dt = -2·w·(η_y·h + η_h·dx2·y/h)
    dw/dt = -½·η_y·(3w - y + dy2)·h - ½·η_h·dx2·(y + w)·w/h
"""

vector_field_dh_doubled = WeightedField(dh=2.0)
"""Alternative (2), dh/dt doubled; args = (eta_h, eta_y, dx2, dy2):

    dh/dt = -2·η_h·dx2·w
    dy/dt = -w·(η_y·h + η_h·dx2·y/h)
    dw/dt = -½·η_y·(3w - y + dy2)·h - ½·η_h·dx2·(y + w)·w/h
"""

vector_field_dw_eta_h_flipped = WeightedField(dw_eta_h=-1.0)
"""Alternative (3), the sign of the η_h term of dw/dt flipped; args = (eta_h, eta_y, dx2, dy2):

    dh/dt = -η_h·dx2·w
    dy/dt = -w·(η_y·h + η_h·dx2·y/h)
    dw/dt = -½·η_y·(3w - y + dy2)·h + ½·η_h·dx2·(y + w)·w/h
"""

vector_field_dy_eta_h_dropped = WeightedField(dy_eta_h=0.0)
"""Alternative (4), the η_h term dropped from dy/dt; args = (eta_h, eta_y, dx2, dy2):

    dh/dt = -η_h·dx2·w
    dy/dt = -w·η_y·h
    dw/dt = -½·η_y·(3w - y + dy2)·h - ½·η_h·dx2·(y + w)·w/h
"""


perturbed_vector_fields = {
    "dy_doubled": vector_field_dy_doubled,
    "dh_doubled": vector_field_dh_doubled,
    "dw_eta_h_flipped": vector_field_dw_eta_h_flipped,
    "dy_eta_h_dropped": vector_field_dy_eta_h_dropped,
}
"""The four alternatives of the paper's "alternatives" experiment, name → field
(numbered (1)–(4) as in the paper's list), each a :class:`WeightedField` with
:func:`vector_field`'s signature (so the four share one compiled program)."""


def invariant(z, eta_h, eta_y, dx2):
    """C = h - (η_h·dx2/η_y)·y/h, conserved along every solution.

    ``z`` [..., 3] = (h, y, w) finite with h > 0 and y >= 0; rates and dx2 finite and > 0,
    broadcasting against z's leading shape (checked on the host).

    Args:
        z: states (h, y, w) on the last axis, [..., 3].
        eta_h: encoder rate η_h per training step, > 0.
        eta_y: decoder rate η_y per training step, > 0.
        dx2: squared input distance of the pair, > 0.

    Returns:
        C [...], in units of h. Raises ``ValueError`` naming an invalid argument.

    Example:
        ``invariant(sol.zs, 2e-3, 1e-3, 1.0)`` is constant along a solved trajectory.
    """
    z = as_array("z", z)
    eta_h, eta_y, dx2 = as_array("eta_h", eta_h), as_array("eta_y", eta_y), as_array("dx2", dx2)
    _check_state("z", z)
    _check_rates(eta_h=eta_h, eta_y=eta_y, dx2=dx2)
    check_broadcast({"z[..., 0]": z.shape[:-1], "eta_h": eta_h.shape, "eta_y": eta_y.shape,
                     "dx2": dx2.shape})
    if is_concrete(z):
        check_positive("h (z[..., 0])", z[..., 0])
        check_nonnegative("y (z[..., 1])", z[..., 1])
    h, y = z[..., 0], z[..., 1]
    return h - (eta_h * dx2 / eta_y) * y / h


def final_distance(h0, y0, eta_h, eta_y, dx2, dy2):
    """h∞ = C/2 + sqrt(C²/4 + k·dy2), k = η_h·dx2/η_y: the end state at a perfect fit.

    Written as k·dy2 / (sqrt(C²/4 + k·dy2) - C/2) when C < 0 so that the lazy
    limit with a large negative C loses no digits. C = h0 − k·y0/h0 is the
    :func:`invariant` at the start; all arguments broadcast together.

    Args:
        h0: initial squared representational distance h(0), > 0.
        y0: initial squared output distance y(0), >= 0.
        eta_h: encoder rate η_h per training step, > 0.
        eta_y: decoder rate η_y per training step, > 0.
        dx2: squared input distance of the pair, > 0.
        dy2: squared target distance of the pair, >= 0.

    Returns:
        h∞, the squared representational distance once y = dy2 and w = 0 (units of h).
        Raises ``ValueError`` naming an invalid argument.

    Example:
        ``final_distance(1e-4, 1e-6, 2e-3, 1e-3, 1.0, 0.5)`` ≈ 0.99 (rich regime).
    """
    h0, y0 = as_array("h0", h0), as_array("y0", y0)
    eta_h, eta_y, dx2, dy2 = _as_rates(eta_h, eta_y, dx2, dy2)
    _check_rates(eta_h=eta_h, eta_y=eta_y, dx2=dx2, dy2=dy2)
    check_positive("h0", h0)
    check_nonnegative("y0", y0)
    check_broadcast({"h0": h0.shape, "y0": y0.shape, "eta_h": eta_h.shape,
                     "eta_y": eta_y.shape, "dx2": dx2.shape, "dy2": dy2.shape})
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
    """h∞ as h0, y0 → 0: sqrt(η_h/η_y·dx2·dy2), the geometric mean of input and output distance.

    The end state of :func:`final_distance` when C → 0 (small initial weights): it
    no longer depends on the initialization. Only the rate ratio η_h/η_y matters.

    Args:
        eta_h: encoder rate η_h per training step, > 0.
        eta_y: decoder rate η_y per training step, > 0.
        dx2: squared input distance, > 0.
        dy2: squared target distance, >= 0.

    Returns:
        The rich-regime h∞ (units of h), the arguments' broadcast shape.
    """
    eta_h, eta_y, dx2, dy2 = _as_rates(eta_h, eta_y, dx2, dy2)
    _check_rates(eta_h=eta_h, eta_y=eta_y, dx2=dx2, dy2=dy2)
    check_broadcast({"eta_h": eta_h.shape, "eta_y": eta_y.shape, "dx2": dx2.shape, "dy2": dy2.shape})
    return jnp.sqrt(eta_h / eta_y * dx2 * dy2)


def lazy_limit(h0):
    """h∞ for large initial weights: the representation barely moves, h∞ ≈ h0.

    The limit of :func:`final_distance` when h0 ≫ sqrt(k·dy2), where C ≈ h0.

    Args:
        h0: initial squared representational distance, > 0.

    Returns:
        ``h0`` itself (checked and converted to an array).
    """
    h0 = as_array("h0", h0)
    check_positive("h0", h0)
    return h0


def loss_curve(ts, z, dy2, eta_mean, e0):
    """L(t) = ¼·(2·e^(-2·η_ȳ·t)·e0 + w + ½·(dy2 - y)) for one-dimensional output.

    ``z`` holds (h, y, w) at the times ``ts`` (shape [..., len(ts), 3], finite); t is
    the number of training steps since the start (``ts`` 1-D, finite, strictly
    increasing), and ``e0`` the mean-output error at t = 0. ``dy2``, ``eta_mean`` and
    ``e0`` broadcast against z's leading shape (checked on the host; with traced
    arguments, under jit or vmap, only the shapes are checked, so the fit of η_ȳ in
    :func:`rsd.fitting.fit_loss_rate` evaluates this same function).

    Returns:
        L [..., len(ts)], the ½·MSE loss of the pair at each time, in squared output
        units. ``eta_mean`` is η_ȳ per training step.
    """
    ts, z = as_array("ts", ts), as_array("z", z)
    dy2, eta_mean, e0 = as_array("dy2", dy2), as_array("eta_mean", eta_mean), as_array("e0", e0)
    check_nonnegative("dy2", dy2)
    check_positive("eta_mean", eta_mean)
    check_nonnegative("e0", e0)
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise ValueError(f"ts must be a 1-D array of times; got shape {ts.shape}.")
    check_finite("ts", ts)
    if ts.shape[0] > 1:
        check_increasing("ts", ts)
    if z.ndim < 2 or z.shape[-1] != 3 or z.shape[-2] != ts.shape[0]:
        raise ValueError(f"z must have shape [..., len(ts), 3] = [..., {ts.shape[0]}, 3] holding "
                         f"(h, y, w) at the times ts; got shape {z.shape}.")
    check_finite("z", z)
    check_broadcast({"z[..., 0, 0]": z.shape[:-2], "dy2": dy2.shape, "eta_mean": eta_mean.shape,
                     "e0": e0.shape})
    return _loss_curve(ts, z, dy2, eta_mean, e0)


def _loss_curve(ts, z, dy2, eta_mean, e0):
    y, w = z[..., 1], z[..., 2]
    eta_mean = jnp.asarray(eta_mean)[..., None]
    e0 = jnp.asarray(e0)[..., None]
    dy2 = jnp.asarray(dy2)[..., None]
    return 0.25 * (2.0 * jnp.exp(-2.0 * eta_mean * ts) * e0 + w + 0.5 * (dy2 - y))


def _as_rates(eta_h, eta_y, dx2, dy2):
    return tuple(as_array(name, p) for name, p in
                 (("eta_h", eta_h), ("eta_y", eta_y), ("dx2", dx2), ("dy2", dy2)))


def _check_state(name, z):
    if z.ndim < 1 or z.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [..., 3] holding (h, y, w); got shape {z.shape}.")
    check_finite(name, z)


def _check_rates(**named):
    for name in ("eta_h", "eta_y", "dx2"):
        if name in named:
            check_positive(name, named[name])
    if "dy2" in named:
        check_nonnegative("dy2", named["dy2"])
