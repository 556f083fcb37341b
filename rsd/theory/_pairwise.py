"""Pairwise predictions: the two-point end state applied to every pair of a data set.

For n points with squared-distance matrices DX (inputs), DY (targets), H0 (initial
representations) and Y0 (initial outputs), each pair (i, j) is treated as the
two-point problem of :func:`rsd.theory.final_distance` (the paper's XOR
construction). The MNIST heuristic keeps only its rich limit, sqrt(η_h/η_y·DX ⊙ DY).
All functions take [n, n] matrices, are jit/vmap friendly and never produce NaN
in their predictions; arguments are checked on the host (skipped for tracers).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import (
    as_array,
    as_host,
    check_finite,
    check_nonnegative,
    check_positive,
    is_concrete,
)
from ._dynamics import _final_distance

__all__ = ["predicted_distance_matrix", "structure_prediction", "matrix_correlation"]

# Relative asymmetry tolerated in a distance matrix: a few float32 rounding errors.
_SYMMETRY_RTOL = 1e-5


def predicted_distance_matrix(dx2, dy2, h0, y0, eta_h, eta_y):
    """H∞[i, j] = final_distance(H0, Y0, η_h, η_y, DX, DY)[i, j]: each pair's end-of-training h.

    Inputs are [n, n] squared distances (h in representation units², time-free);
    rates broadcast against them. Pairs the two-point formula cannot take are
    defined by continuity, so nothing is NaN (values and gradients):

    * i = j, and pairs with identical inputs (DX = 0): 0, the representations
      of equal inputs coincide;
    * DY = 0: max(C, 0), the formula's value with no target separation;
    * H0 = 0: the limit h0 → 0⁺ at fixed y0, i.e. sqrt(η_h/η_y·DX·DY) (the rich
      limit) when Y0 = 0 and 0 when Y0 > 0.
    """
    dx2, dy2, h0, y0 = (as_array(name, a) for name, a in
                        (("dx2", dx2), ("dy2", dy2), ("h0", h0), ("y0", y0)))
    _check_matrices(dx2=dx2, dy2=dy2, h0=h0, y0=y0)
    eta_h, eta_y = _check_scalar_rates(eta_h, eta_y)

    dtype = jnp.result_type(dx2, dy2, h0, y0, eta_h, eta_y, float)
    dx2, dy2, h0, y0 = (a.astype(dtype) for a in (dx2, dy2, h0, y0))
    return _predicted_distance_matrix(dx2, dy2, h0, y0, jnp.asarray(eta_h, dtype),
                                      jnp.asarray(eta_y, dtype))


@jax.jit
def _predicted_distance_matrix(dx2, dy2, h0, y0, eta_h, eta_y):
    dtype = dx2.dtype
    n = dx2.shape[-1]
    moving = (dx2 > 0) & ~jnp.eye(n, dtype=bool)
    h_pos = h0 > 0
    separated = dy2 > 0
    # Double where: every branch sees only arguments for which it and its gradient
    # are finite; the masked-out values are then discarded by the final where.
    one = jnp.ones((), dtype)
    safe_dx2 = jnp.where(moving, dx2, one)
    safe_h0 = jnp.where(h_pos, h0, one)
    safe_dy2 = jnp.where(separated, dy2, one)
    k = eta_h * safe_dx2 / eta_y

    h_general = _final_distance(safe_h0, y0, eta_h, eta_y, safe_dx2, safe_dy2)
    h_no_target = jnp.maximum(safe_h0 - k * y0 / safe_h0, 0.0)
    rich_sq = k * dy2
    rich_pos = rich_sq > 0
    h_rich = jnp.where(rich_pos, jnp.sqrt(jnp.where(rich_pos, rich_sq, one)), 0.0)
    h_from_zero = jnp.where(y0 > 0, 0.0, h_rich)

    out = jnp.where(h_pos, jnp.where(separated, h_general, h_no_target), h_from_zero)
    return jnp.where(moving, out, 0.0)


def structure_prediction(dx2, dy2, eta_h=1.0, eta_y=1.0):
    """sqrt(η_h/η_y·DX ⊙ DY): the rich limit (H0, Y0 → 0 with Y0/H0 → 0) of every pair.

    The MNIST structure heuristic: each pair's representational distance is the
    geometric mean of its input and output distances. With the default rates it
    is a shape to correlate against, not an absolute prediction.
    """
    dx2, dy2 = as_array("dx2", dx2), as_array("dy2", dy2)
    _check_matrices(dx2=dx2, dy2=dy2)
    eta_h, eta_y = _check_scalar_rates(eta_h, eta_y)
    prod = eta_h / eta_y * dx2 * dy2
    pos = prod > 0
    # Double where keeps the gradient of sqrt at 0 (the diagonal) finite.
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, prod, 1.0)), 0.0)


def matrix_correlation(predicted, measured):
    """Pearson correlation of the strict upper triangles (i < j) of two [n, n] matrices.

    The paper's figure of merit; NaN when either triangle is constant (undefined,
    as with numpy.corrcoef), with gradients kept finite.
    """
    predicted, measured = as_array("predicted", predicted), as_array("measured", measured)
    for name, m in (("predicted", predicted), ("measured", measured)):
        _check_square(name, m)
        check_finite(name, m)
    if predicted.shape != measured.shape:
        raise ValueError(f"predicted and measured must have the same shape; got "
                         f"{predicted.shape} and {measured.shape}.")
    n = predicted.shape[-1]
    if n < 3:
        raise ValueError(f"predicted and measured must be at least 3 x 3 (two pairs) for a "
                         f"correlation; got {n} x {n}.")
    return _upper_triangle_correlation(predicted, measured)


@jax.jit
def _upper_triangle_correlation(predicted, measured):
    i, j = np.triu_indices(predicted.shape[-1], k=1)
    a, b = predicted[i, j], measured[i, j]
    a = a - jnp.mean(a)
    b = b - jnp.mean(b)
    var = jnp.sum(a * a) * jnp.sum(b * b)
    ok = var > 0
    corr = jnp.sum(a * b) / jnp.sqrt(jnp.where(ok, var, 1.0))
    return jnp.where(ok, corr, jnp.nan)


def _check_square(name, m):
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square [n, n] matrix (vmap to batch); "
                         f"got shape {m.shape}.")


def _check_matrices(**named):
    shape = None
    for name, m in named.items():
        _check_square(name, m)
        if shape is None:
            shape, first = m.shape, name
        elif m.shape != shape:
            raise ValueError(f"{name} must have the shape of {first}, {shape}; got {m.shape}.")
        check_nonnegative(name, m)
        if is_concrete(m):
            a = as_host(m)
            scale = np.max(np.abs(a)) if a.size else 0.0
            if np.max(np.abs(a - a.T), initial=0.0) > _SYMMETRY_RTOL * scale:
                raise ValueError(f"{name} must be symmetric (a distance matrix); largest "
                                 f"|{name} - {name}.T| is {np.max(np.abs(a - a.T))!r}.")


def _check_scalar_rates(eta_h, eta_y):
    """One rate pair per matrix: a vector of rates would make the matrix asymmetric."""
    rates = []
    for name, rate in (("eta_h", eta_h), ("eta_y", eta_y)):
        rate = as_array(name, rate)
        if rate.ndim != 0:
            raise ValueError(f"{name} must be a scalar (one rate for all pairs; vmap to batch "
                             f"over rates); got shape {rate.shape}.")
        check_positive(name, rate)
        rates.append(rate)
    return rates
