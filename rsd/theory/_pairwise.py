"""Pairwise predictions for many points, and their comparison with measurements.

* :func:`predicted_distance_matrix`: for n points with squared-distance matrices DX
  (inputs), DY (targets), H0 (initial representations) and Y0 (initial outputs), each
  pair (i, j) is treated as the two-point problem of :func:`rsd.theory.final_distance`
  (the paper's XOR construction). Takes [n, n] matrices, jit/vmap friendly, never NaN.
* :func:`structure_prediction`: the reference code's MNIST structure heuristic,
  exp(−A)·A·exp(−A) with A = D_x ⊙ D_y of *unsquared* Euclidean distances (exp
  elementwise, · the matrix product). It is not derived from the two-point end state
  (whose rich limit is sqrt(η_h/η_y·DX ⊙ DY)); it is what the paper's figure shows.
* :func:`matrix_correlation`: Pearson correlation of two matrices' upper triangles.

Arguments are checked on the host (skipped for tracers).
"""

from __future__ import annotations

import functools

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
# Up to this many features, distances are summed from differences (exact zero for
# identical rows such as equal one-hot labels); above it, the Gram trick (matmuls).
_DIRECT_MAX_FEATURES = 64
# Rows of A formed at once in structure_prediction: bounds memory to a few [block, n]
# arrays (and, for few features, the fused [block, n, k] differences).
_BLOCK = 256


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

    Example:
        ```python
        import numpy as np
        from rsd import data, quantities, theory

        x, y = data.xor()
        dx2 = np.asarray(quantities.pairwise_squared_distances(x))
        dy2 = np.asarray(quantities.pairwise_squared_distances(y))
        h_inf = theory.predicted_distance_matrix(dx2, dy2, 1e-4 * dx2, np.zeros((4, 4)),
                                                 1e-3, 4e-2)
        # from a small start, 00 and 11 (same target) stay close; other pairs separate
        assert h_inf[0, 3] < 0.01 * h_inf[0, 1]
        ```
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


def structure_prediction(x, y, *, rows=None):
    """The reference's MNIST structure heuristic P = exp(−A) · A · exp(−A), A = D_x ⊙ D_y.

    ``x`` [n, d] inputs (the reference: raw 0–255 pixels, flattened), ``y`` [n, k]
    targets (one-hot labels); D_x[i, j] = ||x_i − x_j|| and D_y[i, j] = ||y_i − y_j||
    are Euclidean distances, *not* squared; exp is elementwise, · the matrix product.
    With raw pixels exp(−A) is the same-label indicator, so P[i, j] sums A over the
    pairs of i's class and j's class.

    ``rows`` (integer indices into 0..n−1) returns only ``P[rows][:, rows] =
    exp(−A)[rows] · A · exp(−A)[:, rows]``, [len(rows), len(rows)], without forming P or
    A: A is built ``256`` rows at a time, so memory is O((len(rows) + 256)·n) and
    time O(len(rows)·n·(n + d)). ``rows=None`` means all rows (O(n³) time).

    Computed in the inputs' floating dtype (float32 unless JAX's x64 mode is on).
    Distances over at most 64 features are summed from differences (exactly 0 for
    identical rows, which keeps exp(−A) = 1 on same-label pairs); over more, by the
    Gram trick on mean-centred data with full-precision matmuls, clipped at 0; the
    diagonal is exactly 0 either way.
    """
    x, y = as_array("x", x), as_array("y", y)
    for name, m in (("x", x), ("y", y)):
        if m.ndim != 2:
            raise ValueError(f"{name} must be a [n, features] array (one row per point); "
                             f"got shape {m.shape}.")
        check_finite(name, m)
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"y must have one row per row of x ({n}); got shape {y.shape}.")
    if n == 0:
        raise ValueError("x must have at least one row; got 0.")
    rows = _check_rows(rows, n)
    dtype = jnp.result_type(x.dtype, y.dtype, float)
    return _structure_rows(x.astype(dtype), y.astype(dtype), jnp.asarray(rows),
                           block=min(_BLOCK, n))


def _check_rows(rows, n):
    if rows is None:
        return np.arange(n)
    try:
        r = np.asarray(rows)
    except Exception:  # ragged sequences and the like
        raise ValueError(f"rows must be a 1-D array of integer indices; got {type(rows).__name__}.") from None
    if r.ndim != 1 or r.size == 0 or not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"rows must be a non-empty 1-D array of integer indices in [0, {n - 1}]; "
                         f"got dtype {r.dtype} shape {r.shape}.")
    if r.min() < 0 or r.max() >= n:
        bad = r[(r < 0) | (r >= n)][0]
        raise ValueError(f"rows must be indices in [0, {n - 1}] (x has {n} rows); got {bad}.")
    return r.astype(np.int32 if n < 2**31 else np.int64)


def _distances(a, b, ia, ib, b_sq):
    """Euclidean distances [len(a), len(b)] between rows; exactly 0 where ia == ib."""
    if a.shape[-1] <= _DIRECT_MAX_FEATURES:
        sq = jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)
    else:
        cross = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
        sq = jnp.maximum(jnp.sum(a * a, axis=-1)[:, None] + b_sq[None, :] - 2.0 * cross, 0.0)
    sq = jnp.where(ia[:, None] == ib[None, :], 0.0, sq)
    return jnp.sqrt(sq)


@functools.partial(jax.jit, static_argnames="block")
def _structure_rows(x, y, rows, *, block):
    n = x.shape[0]
    hi = jax.lax.Precision.HIGHEST
    # Distances do not change under translation; centring shrinks the norms whose
    # difference the Gram trick takes, and with them its cancellation error.
    x = x - jnp.mean(x, axis=0) if x.shape[-1] > _DIRECT_MAX_FEATURES else x
    y = y - jnp.mean(y, axis=0) if y.shape[-1] > _DIRECT_MAX_FEATURES else y
    x_sq, y_sq = jnp.sum(x * x, axis=-1), jnp.sum(y * y, axis=-1)
    index = jnp.arange(n)

    def a_of(i):  # rows i of A, [len(i), n]
        return (_distances(x[i], x, i, index, x_sq) * _distances(y[i], y, i, index, y_sq))

    e_rows = jnp.exp(-a_of(rows))  # exp(−A)[rows], [r, n]
    n_blocks = -(-n // block)
    # Padded block starts; padded indices repeat the last row and get weight 0.
    e_pad = jnp.pad(e_rows, ((0, 0), (0, n_blocks * block - n)))

    def add_block(acc, start):
        i = start + jnp.arange(block)
        a_block = a_of(jnp.minimum(i, n - 1))  # [block, n]
        e_block = jax.lax.dynamic_slice_in_dim(e_pad, start, block, axis=1)  # [r, block]
        return acc + jnp.matmul(e_block, a_block, precision=hi), None

    starts = jnp.arange(n_blocks) * block
    ea, _ = jax.lax.scan(add_block, jnp.zeros_like(e_rows), starts)  # exp(−A)[rows] · A
    return jnp.matmul(ea, e_rows.T, precision=hi)  # exp(−A) is symmetric


def matrix_correlation(predicted, measured):
    """Pearson correlation of the strict upper triangles (i < j) of two [n, n] matrices.

    The paper's figure of merit; NaN when either triangle is constant (undefined,
    as with numpy.corrcoef), with gradients kept finite.

    Args:
        predicted: an [n, n] matrix, e.g. :func:`predicted_distance_matrix`'s.
        measured: an [n, n] matrix of the same shape, e.g. a trained network's
            pairwise squared distances.

    Returns:
        The correlation r ∈ [−1, 1] (a 0-d array). Non-square, non-finite or
        mismatched matrices raise ``ValueError`` naming the argument.
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
