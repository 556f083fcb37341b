"""Host-side argument checks for public entry points.

Each check raises ``ValueError`` with a sentence naming the argument and the
allowed range. Checks are skipped for traced values (inside ``jit``/``vmap``/
``grad`` nothing may raise); the public functions are then pure.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = [
    "is_concrete",
    "as_host",
    "check_finite",
    "check_positive",
    "check_nonnegative",
    "check_increasing",
    "check_broadcast",
    "check_choice",
    "check_int_range",
]


def is_concrete(*xs) -> bool:
    """True when no argument is a tracer, so its values can be inspected."""
    leaves = jax.tree_util.tree_leaves(xs)
    return not any(isinstance(x, jax.core.Tracer) for x in leaves)


def as_host(x):
    return np.asarray(x)


def check_finite(name, x):
    if not is_concrete(x):
        return
    a = as_host(x)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN or inf); got {_describe(a, ~np.isfinite(a))}.")


def check_positive(name, x):
    _check_bound(name, x, lambda a: a > 0, "> 0")


def check_nonnegative(name, x):
    _check_bound(name, x, lambda a: a >= 0, ">= 0")


def _check_bound(name, x, holds, text):
    if not is_concrete(x):
        return
    check_finite(name, x)
    a = as_host(x)
    ok = holds(a)
    if not np.all(ok):
        raise ValueError(f"{name} must be {text}; got {_describe(a, ~ok)}.")


def check_increasing(name, x):
    if not is_concrete(x):
        return
    check_finite(name, x)
    a = as_host(x)
    if a.ndim != 1 or a.size < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 times; got shape {a.shape}.")
    steps = np.diff(a) > 0
    if not np.all(steps):
        k = int(np.argmin(steps))
        raise ValueError(f"{name} must be strictly increasing; got {a[k].item()!r} followed by "
                         f"{a[k + 1].item()!r} at index {k + 1}.")


def check_broadcast(named_shapes: dict[str, tuple]):
    """Raise unless all shapes broadcast together; return the broadcast shape."""
    try:
        return np.broadcast_shapes(*named_shapes.values())
    except ValueError:
        desc = ", ".join(f"{k} {tuple(v)}" for k, v in named_shapes.items())
        raise ValueError(f"arguments do not broadcast together: {desc}.") from None


def check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(map(str, allowed))}; got {value!r}.")


def check_int_range(name, value, lo, hi=None):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = ok and value >= lo and (hi is None or value <= hi)
    if not ok:
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}; got {value!r}.")


def _describe(a, bad=None) -> str:
    """The value, or for an array its shape and its first offending entry."""
    a = np.asarray(a)
    if a.size == 1:
        return repr(a.reshape(()).item())
    flat = a.ravel()
    where = int(np.argmax(np.asarray(bad).ravel())) if bad is not None else 0
    index = np.unravel_index(where, a.shape)
    return f"array of shape {a.shape} with {flat[where].item()!r} at index {tuple(int(i) for i in index)}"
