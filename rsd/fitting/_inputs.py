"""The fits' inputs: host checks of recorded trajectories and their [n, T, 3] layout."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._validation import as_array, check_increasing, check_nonnegative, check_positive, is_concrete

__all__: list[str] = []


def _prepare(h, y, w, dx2, dy2, ts, *, strict=False):
    """Host checks; returns data [n, T, 3], ts [T], dx2 [n], dy2 [n] and the leading shape.

    Per-element values (trajectories; array-valued dx2, dy2) are only checked when
    ``strict`` — otherwise the fit marks bad elements BAD_DATA; 0-d dx2 and dy2
    apply to every element and are always checked.
    """
    h, y, w = as_array("h", h), as_array("y", y), as_array("w", w)
    dx2, dy2 = as_array("dx2", dx2), as_array("dy2", dy2)
    for name, a in (("h", h), ("y", y), ("w", w)):
        if a.ndim < 1:
            raise ValueError(f"{name} must be a trajectory with time on the last axis; got a scalar.")
    lengths = {"h": h.shape[-1], "y": y.shape[-1], "w": w.shape[-1]}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"h, y and w must have the same number of steps (last axis); got {lengths}.")
    n_times = h.shape[-1]
    if n_times < 3:
        raise ValueError(f"trajectories must have at least 3 steps; got {n_times}.")
    dtype = jnp.promote_types(jnp.result_type(h, y, w), jnp.float32)
    if ts is None:
        ts = jnp.arange(n_times, dtype=dtype)
    else:
        ts = as_array("ts", ts)
        if ts.shape != (n_times,):
            raise ValueError(f"ts must have shape ({n_times},) like the trajectories' last axis; "
                             f"got {ts.shape}.")
        ts = ts.astype(dtype)
        check_increasing("ts", ts)  # in the working precision: no equal neighbours
    if strict and is_concrete(h, y, w):
        for name, a in (("h", h), ("y", y), ("w", w)):
            bad = ~np.isfinite(np.asarray(a))
            if bad.any():
                where = np.argwhere(bad)[0]
                raise ValueError(f"{name} must be finite; it holds {int(bad.sum())} NaN/inf "
                                 f"values (first at index {tuple(int(i) for i in where)}).")
        check_positive("h at the first step (h[..., 0])", h[..., 0])
        check_nonnegative("y at the first step (y[..., 0])", y[..., 0])
    if strict or dx2.ndim == 0:
        check_positive("dx2", dx2)
    if strict or dy2.ndim == 0:
        check_nonnegative("dy2", dy2)
    try:
        batch = np.broadcast_shapes(h.shape[:-1], y.shape[:-1], w.shape[:-1], dx2.shape, dy2.shape)
    except ValueError:
        raise ValueError(f"leading shapes do not broadcast: h {h.shape[:-1]}, y {y.shape[:-1]}, "
                         f"w {w.shape[:-1]}, dx2 {dx2.shape}, dy2 {dy2.shape}.") from None
    batch = tuple(int(d) for d in batch)
    n = int(np.prod(batch))
    data = jnp.stack([jnp.broadcast_to(a.astype(dtype), batch + (n_times,)) for a in (h, y, w)], -1)
    data = data.reshape(n, n_times, 3)
    dx2_b = jnp.broadcast_to(dx2.astype(dtype), batch).reshape(n)
    dy2_b = jnp.broadcast_to(dy2.astype(dtype), batch).reshape(n)
    return data, ts, dx2_b, dy2_b, batch
