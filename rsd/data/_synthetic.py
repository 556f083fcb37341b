"""Small synthetic data sets of the paper: two points, XOR and context-dependent Gaussian blobs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_int_range, check_key, check_nonnegative, check_positive, is_concrete

__all__ = ["two_points", "xor", "context_blobs"]


def _float_dtype(dtype):
    """``dtype`` as a floating-point dtype (default: JAX's default float); ValueError otherwise."""
    if dtype is None:
        return jnp.asarray(0.0).dtype
    try:
        dt = jnp.dtype(dtype)
        jnp.zeros((), dt)  # a floating dtype JAX has (not numpy's float128)
    except Exception:  # numpy's dtype parser raises TypeError, ValueError or SyntaxError (for ",")
        dt = None
    if dt is None or not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"dtype must be a floating-point dtype (e.g. jnp.float32); got {dtype!r}.")
    # float64 without jax_enable_x64 is float32: check against what the arrays will hold.
    return jnp.dtype(jax.dtypes.canonicalize_dtype(dt))


def _check_representable(name, value, dtype):
    """ValueError when the coordinates built from ``value`` overflow ``dtype``."""
    with np.errstate(over="ignore"):
        finite = np.all(np.isfinite(np.asarray(value, dtype)))
    if not finite:
        raise ValueError(f"{name} is too large for {dtype}: the points' coordinates overflow to "
                         f"inf (largest finite {dtype} is {jnp.finfo(dtype).max:.3g}).")


def _check_real_scalar(name, value):
    if not is_concrete(value):
        return
    try:
        a = np.asarray(value)
        ok = a.shape == () and (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer))
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, bool):
        raise ValueError(f"{name} must be a real number; got {value!r}.")


# No array holds more bytes than a signed pointer-sized integer counts (numpy's limit); the
# synthetic sets are built in float64 on the host. Requests below it may still not fit in memory.
_MAX_VALUES = np.iinfo(np.intp).max // 8


def _check_size(names, values):
    """ValueError naming ``names`` when an array of ``values`` float64 values cannot exist."""
    if values > _MAX_VALUES:
        raise ValueError(f"{names} would need {values:.3g} values; no array holds more than {_MAX_VALUES:.3g}.")


def two_points(dx2, dy2, *, in_dim: int = 1, out_dim: int = 1, dtype=None):
    """Two training points with ||x2 − x1||² = dx2 and ||y2* − y1*||² = dy2, placed as in the reference code.

    x1 = −1/sqrt(d_in)·1, x2 = (−1 + sqrt(dx2))/sqrt(d_in)·1; y1* = 0.6/sqrt(d_out)·1,
    y2* = (0.6 + sqrt(dy2))/sqrt(d_out)·1. Returns (x [2, in_dim], y [2, out_dim]).
    Concrete settings are computed in float64 and rounded once to ``dtype`` (default:
    JAX's default float), as the reference does; traced dx2/dy2 (under vmap) are
    computed in ``dtype`` directly.

    Example:
        ```python
        import numpy as np
        from rsd import data, quantities

        x, y = data.two_points(1.0, 0.5, in_dim=3, out_dim=2)
        assert np.isclose(quantities.squared_distance(x[0], x[1]), 1.0)
        assert np.isclose(quantities.squared_distance(y[0], y[1]), 0.5)
        ```
    """
    check_int_range("in_dim", in_dim, 1)
    check_int_range("out_dim", out_dim, 1)
    _check_size("in_dim", 2 * in_dim)
    _check_size("out_dim", 2 * out_dim)
    dtype = _float_dtype(dtype)
    for name, value in (("dx2", dx2), ("dy2", dy2)):
        _check_real_scalar(name, value)
        check_nonnegative(name, value)
    if is_concrete(dx2, dy2):
        dx2, dy2 = float(np.asarray(dx2)), float(np.asarray(dy2))
        x = np.array([[-1.0] * in_dim, [-1.0 + np.sqrt(dx2)] * in_dim]) / np.sqrt(in_dim)
        y = np.array([[0.6] * out_dim, [0.6 + np.sqrt(dy2)] * out_dim]) / np.sqrt(out_dim)
        # The squared distance of the rounded points must be finite too (it is recorded).
        _check_representable("dx2", np.append(x, dx2), dtype)
        _check_representable("dy2", np.append(y, dy2), dtype)
        return jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    sx, sy = jnp.sqrt(jnp.asarray(dx2, dtype)), jnp.sqrt(jnp.asarray(dy2, dtype))
    x = jnp.stack([jnp.full((in_dim,), -1.0, dtype), jnp.full((in_dim,), -1.0 + sx, dtype)])
    y = jnp.stack([jnp.full((out_dim,), 0.6, dtype), jnp.full((out_dim,), 0.6 + sy, dtype)])
    return x / jnp.sqrt(jnp.asarray(in_dim, dtype)), y / jnp.sqrt(jnp.asarray(out_dim, dtype))


def xor(*, dtype=None):
    """The XOR task as in the paper's notebook: x ∈ {0,1}² in the order 00, 01, 10, 11; y* = x₁ XOR x₂.

    Returns (x [4, 2], y [4, 1]).
    """
    dtype = _float_dtype(dtype)
    x = jnp.asarray([[0, 0], [0, 1], [1, 0], [1, 1]], dtype)
    y = jnp.asarray([[0], [1], [1], [0]], dtype)
    return x, y


def context_blobs(*, n_centers: int = 30, n_pixels: int = 5, sigma: float = 1.0, key=None, dtype=None):
    """Gaussian blobs on a pixel grid plus a two-unit context; the target is the blob's x or y coordinate.

    Pixels sit on linspace(−1, 1, n_pixels)²; a blob centred at (μx, μy) has pixel values
    exp(−((px − μx)² + (py − μy)²)/(2σ²)), normalised to sum 1 and flattened row-major
    (rows index py). Centres: the n_centers × n_centers grid on [−1, 1]² (μx outer, μy
    inner, the paper's order) or, given ``key``, n_centers² centres uniform on [−1, 1]²
    (deterministic given the key). Each blob appears twice: first with context (1, 0)
    and target μx, then with context (0, 1) and target μy. Returns
    (x [2·n², n_pixels² + 2], y [2·n², 1]); rows i and i + n² show the same blob.
    """
    check_int_range("n_centers", n_centers, 1)
    check_int_range("n_pixels", n_pixels, 1)
    _check_size("n_centers and n_pixels", 2 * n_centers**2 * (n_pixels**2 + 2))
    _check_real_scalar("sigma", sigma)
    check_positive("sigma", sigma)
    dtype = _float_dtype(dtype)
    if key is not None:
        key = check_key("key", key)
    if key is None:
        grid = np.linspace(-1.0, 1.0, n_centers)
        mu = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    else:
        mu = np.asarray(jax.random.uniform(key, (n_centers * n_centers, 2), jnp.float32, -1.0, 1.0), np.float64)
    axis = np.linspace(-1.0, 1.0, n_pixels)
    px, py = np.meshgrid(axis, axis)  # px varies along columns, py along rows
    d2 = (px[None] - mu[:, 0, None, None]) ** 2 + (py[None] - mu[:, 1, None, None]) ** 2
    # Shifted by each blob's nearest pixel before exp: the same normalised blob, without
    # underflow to 0/0 when sigma is small next to the pixel spacing. 2σ² may overflow to
    # inf (a flat blob) or underflow to 0 (all weight on the nearest pixels): the limits.
    excess = d2 - d2.min(axis=(1, 2), keepdims=True)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        two_var = 2.0 * np.float64(sigma) ** 2
        exponent = np.where(excess == 0, 0.0, excess / two_var)
    blobs = np.exp(-exponent)
    blobs = (blobs / blobs.sum(axis=(1, 2), keepdims=True)).reshape(len(mu), -1)
    n = len(mu)
    context_x = np.tile([1.0, 0.0], (n, 1))
    context_y = np.tile([0.0, 1.0], (n, 1))
    x = np.concatenate([np.concatenate([blobs, context_x], 1), np.concatenate([blobs, context_y], 1)])
    y = np.concatenate([mu[:, 0], mu[:, 1]])[:, None]
    return jnp.asarray(x, dtype), jnp.asarray(y, dtype)
