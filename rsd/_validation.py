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
    "check_vector_field",
    "as_array",
    "check_tolerance",
    "check_solver",
    "check_real",
    "check_key",
]


def is_concrete(*xs) -> bool:
    """True when no argument is a tracer, so its values can be inspected."""
    leaves = jax.tree_util.tree_leaves(xs)
    return not any(isinstance(x, jax.core.Tracer) for x in leaves)


def as_host(x):
    """``x`` as a numpy array of a real numeric dtype, or ValueError (huge Python ints
    become object arrays, strings string arrays, keys cannot convert)."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected a numeric value or array; got {type(x).__name__}.") from None
    if a.dtype == object:
        try:
            a = a.astype(float)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"expected a numeric value or array; got {x!r:.60}.") from None
    return a


def check_finite(name, x):
    if not is_concrete(x):
        return
    try:
        a = as_host(x)
        finite = np.isfinite(a)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number or array of them; got {x!r:.60}.") from None
    if not np.all(finite):
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
    if not isinstance(value, str) or value not in allowed:
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


def check_vector_field(name, field, dtype=np.float32):
    """``field`` must be a callable ``(t, z, args) -> dz/dt`` mapping z [3] to [3]
    with args = (eta_h, eta_y, dx2, dy2) scalars; checked by tracing it once, abstractly."""
    if not callable(field):
        raise ValueError(f"{name} must be a function (t, z, args) -> dz/dt with "
                         f"args = (eta_h, eta_y, dx2, dy2); got {field!r}.")
    s = jax.ShapeDtypeStruct((), dtype)
    try:
        out = jax.eval_shape(field, s, jax.ShapeDtypeStruct((3,), dtype), (s, s, s, s))
    except Exception as e:  # any failure of the user's function is a bad argument
        raise ValueError(f"{name} must accept (t, z [3], (eta_h, eta_y, dx2, dy2)); calling it "
                         f"failed with {type(e).__name__}: {e}") from None
    if getattr(out, "shape", None) != (3,):
        raise ValueError(f"{name} must return dz/dt of shape [3] for z of shape [3]; "
                         f"got {getattr(out, 'shape', type(out).__name__)}.")


def as_array(name, x):
    """``x`` as a JAX array of a real numeric dtype (integer or floating, not bool);
    a ``ValueError`` naming ``name`` for anything else (strings, objects, ragged lists,
    complex numbers). Tracers pass through after the dtype check."""
    if isinstance(x, jax.core.Tracer):
        dtype = x.dtype
    else:
        try:
            x = x if isinstance(x, jax.Array) else np.asarray(x)
        except Exception as e:  # ragged nested sequences and the like
            raise ValueError(f"{name} must be a numeric array; got {type(x).__name__} "
                             f"that numpy cannot convert ({e}).") from None
        dtype = x.dtype
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"{name} must be a real numeric array (integer or floating point); "
                         f"got dtype {dtype}.")
    return jax.numpy.asarray(x)


def check_real(name, value, *, lo=None, hi=None, lo_open=False, hi_open=False, allow_none=False):
    """``value`` must be a finite real number in the given range; returns it as a float."""
    if value is None and allow_none:
        return None
    ok = not isinstance(value, (bool, np.bool_, str, bytes)) and np.ndim(value) == 0
    if ok:
        try:
            v = float(value)
        except (TypeError, ValueError):
            ok = False
    if ok:
        ok = (np.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo))
              and (hi is None or (v < hi if hi_open else v <= hi)))
    if not ok:
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        rng = " and ".join(x for x in (lo_s, hi_s) if x)
        none = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {none}a finite number{' ' + rng if rng else ''}; got {value!r}.")
    return v


def check_tolerance(name, value):
    """A solver tolerance: None (the default) or a finite number >= 0."""
    return check_real(name, value, lo=0.0, allow_none=True)


def check_solver(name, solver):
    """None or a diffrax solver instance (not a string or a class)."""
    import diffrax

    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"{name} must be a diffrax solver instance (e.g. diffrax.Tsit5()) or None; "
                         f"got {solver!r}.")


def check_key(name, key):
    """One typed PRNG key from a typed key or the raw uint32 data of one key; ValueError
    otherwise. Integers are refused (not taken as seeds): ``init(0)`` is more likely a
    slip than a seed."""
    import jax.numpy as jnp

    try:
        typed = key if isinstance(key, jax.Array) else jnp.asarray(key)
        if not jnp.issubdtype(typed.dtype, jax.dtypes.prng_key):
            typed = jax.random.wrap_key_data(typed)
        ok = typed.shape == ()
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        text = repr(key)
        text = text if len(text) <= 60 else text[:57] + "..."
        raise ValueError(f"{name} must be one JAX PRNG key (jax.random.key(seed)) or the raw uint32 data "
                         f"of one key (jax.random.PRNGKey(seed)); got {text}.")
    return typed
