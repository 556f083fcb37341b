"""Host-side checks of :func:`train`'s and :class:`Trainer`'s arguments.

Each check runs before anything is traced and raises ``ValueError`` naming the argument
and its allowed range; nothing here runs inside a compiled program.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_finite


def has_dropout(network) -> bool:
    """Whether training ``network`` draws dropout masks (``network.has_dropout``; rsd's
    networks from before that property say so by their architecture name)."""
    flag = getattr(network, "has_dropout", None)
    if flag is None:
        flag = getattr(network, "architecture", None) == "dropout"
    return bool(flag)


def parameter_template(network):
    """``network.init``'s parameter pytree as ``jax.ShapeDtypeStruct`` leaves (nothing runs;
    traced once per hashable network)."""
    try:
        return _cached_template(network)
    except TypeError:  # an unhashable network: trace again
        return _template(network)


def _template(network):
    return jax.eval_shape(network.init, jax.random.key(0))


_cached_template = functools.lru_cache(maxsize=64)(_template)



def _typed_key(key):
    """A typed PRNG key from a typed key, raw uint32 key data or an integer seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not 0 <= int(key) < 2**63:
            raise ValueError(f"root_key as an integer must be in [0, 2**63); got {_short_repr(key)}.")
        return jax.random.key(int(key))
    try:
        key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape != ():
                raise ValueError
            return key
        key = jax.random.wrap_key_data(key)
        if key.shape != ():
            raise ValueError
        return key
    except (TypeError, ValueError):
        raise ValueError("root_key must be one JAX PRNG key (shape ()), the raw uint32 data of "
                         f"one key or an integer; got {_short_repr(key)}.") from None



def _as_float_array(name, a, dtype):
    """``a`` as a ``dtype`` array, or ValueError naming the argument if it is not numeric."""
    try:
        arr = np.asarray(a) if not isinstance(a, jax.Array) else a
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError
        return jnp.asarray(arr, dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array; got {_short_repr(a)}.") from None


def _short_repr(a):
    text = repr(a)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_data(setting, x, y, num_seeds, network=None):
    """(x per seed?, y per seed?): each of x, y is shared [n, d] or per seed [S, n, d]."""
    for name, a, dim in (("x", x, "in_dim"), ("y", y, "out_dim")):
        if a.ndim not in (2, 3) or a.ndim == 3 and a.shape[0] != num_seeds:
            raise ValueError(
                f"{name} must have shape [n, {dim}] (shared by all seeds) or "
                f"[S={num_seeds}, n, {dim}] (one data set per seed, S = len(seeds)); got "
                f"{tuple(a.shape)}."
            )
    for name, a in (("x", x), ("y", y)):
        if a.shape[-1] < 1:
            raise ValueError(f"{name} must have at least one column (feature); got shape {tuple(a.shape)}.")
    if x.shape[-2] != y.shape[-2] or x.shape[-2] < 2:
        raise ValueError(
            "x and y must have shapes [(S,) n, in_dim] and [(S,) n, out_dim] with the same "
            f"n >= 2; got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if network is not None:  # a given network fixes the dims, not the setting
        for name, a, dim in (("x", x, "in_dim"), ("y", y, "out_dim")):
            if a.shape[-1] != getattr(network, dim):
                raise ValueError(f"{name} must have network.{dim}={getattr(network, dim)} "
                                 f"columns; got {a.shape[-1]}.")
    elif setting.in_dim is not None and x.shape[-1] != setting.in_dim:
        raise ValueError(f"x must have setting.in_dim={setting.in_dim} columns; got {x.shape[-1]}.")
    elif setting.out_dim is not None and y.shape[-1] != setting.out_dim:
        raise ValueError(
            f"y must have setting.out_dim={setting.out_dim} columns; got {y.shape[-1]}.")
    check_finite("x", x)
    check_finite("y", y)
    return x.ndim == 3, y.ndim == 3


def _check_stop_loss(stop_loss):
    if stop_loss is None:
        return None
    ok = isinstance(stop_loss, (int, float, np.integer, np.floating)) and \
        not isinstance(stop_loss, bool)
    if not ok or not math.isfinite(float(stop_loss)) or not float(stop_loss) > 0:
        raise ValueError(f"stop_loss must be None or a finite number > 0; got {stop_loss!r}.")
    return float(stop_loss)


def _check_seeds(seeds):
    try:
        a = np.asarray(seeds)
    except (TypeError, ValueError):
        a = np.asarray([], float)  # not integers: rejected below with the message
    if a.ndim == 0:
        a = a[None]
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"seeds must be a non-empty 1-D sequence of integers; got {seeds!r}.")
    if np.any(a < 0) or np.any(a >= 2**31):
        raise ValueError("seeds must be integers in [0, 2**31).")
    return a.astype(np.int64)


def _is_index(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_pair(pair, n):
    try:
        i, j = pair
    except (TypeError, ValueError):
        raise ValueError(f"pair must be two point indices (i, j); got {pair!r}.") from None
    if not (_is_index(i) and _is_index(j)):
        raise ValueError(f"pair must be two integer point indices (i, j); got {pair!r}.")
    i, j = int(i), int(j)
    if not (0 <= i < n and 0 <= j < n) or i == j:
        raise ValueError(f"pair must be two different indices in [0, {n}); got {pair!r}.")
    return i, j


def _check_layers(name, layers, num_hidden):
    if layers is None:
        return tuple(range(num_hidden))
    if _is_index(layers):
        layers = (layers,)
    try:
        layers = tuple(layers)
    except TypeError:
        raise ValueError(f"{name} must be a non-empty sequence of hidden-layer indices in "
                         f"[0, {num_hidden}); got {layers!r}.") from None
    if not layers or not all(_is_index(k) and 0 <= k < num_hidden for k in layers):
        raise ValueError(
            f"{name} must be a non-empty sequence of hidden-layer indices in [0, {num_hidden}); "
            f"got {layers!r}."
        )
    return tuple(int(k) for k in layers)




def _mask_shapes(network, n):
    """Per-step keep-mask shapes of a training pass over ``n`` points, one per mask."""
    layer_shapes = getattr(network, "layer_shapes", None)
    if layer_shapes is not None:
        return [(n, w[0]) for w, _ in layer_shapes]
    masks = jax.eval_shape(lambda k: network.dropout_masks(k, n), jax.random.key(0))
    return [tuple(m.shape) for m in jax.tree.leaves(masks)]


def _check_masks(masks, setting, network, n):
    if masks is None:
        return None
    given = masks
    if not has_dropout(network) or setting.batch_size is not None and \
            setting.batch_size < n:
        raise ValueError("dropout_masks need the 'dropout' architecture trained full batch.")
    shapes = [(setting.steps,) + shape for shape in _mask_shapes(network, n)]
    try:
        masks = tuple(jnp.asarray(m, bool) for m in masks)
    except (TypeError, ValueError):
        masks = None
    if masks is None or [m.shape for m in masks] != shapes:
        raise ValueError(
            f"dropout_masks must be {len(shapes)} boolean arrays of shapes {shapes} "
            "([steps, n, fan_in] per linear layer); got "
            f"{[tuple(m.shape) for m in masks] if masks is not None else _short_repr(given)}."
        )
    return masks


def _check_matrix_steps(matrix_steps, steps):
    a = np.asarray(matrix_steps).reshape(-1)
    if a.size == 0 or not np.issubdtype(a.dtype, np.integer) or np.any(a < 0) \
            or np.any(a > steps) or np.any(np.diff(a) <= 0):
        raise ValueError(
            f"matrix_steps must be strictly increasing integers in [0, steps={steps}]; "
            f"got {matrix_steps!r}."
        )
    return tuple(int(t) for t in a)



def _check_checkpoint_steps(checkpoint_steps, steps):
    """``checkpoint_steps`` as a tuple of strictly increasing ints in [0, steps], or None."""
    if checkpoint_steps is None:
        return None
    try:
        a = np.asarray(checkpoint_steps)
    except (TypeError, ValueError):
        a = np.asarray([], float)
    a = a.reshape(-1) if a.ndim <= 1 else a
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer) \
            or np.any(a < 0) or np.any(a > steps) or np.any(np.diff(a) <= 0):
        raise ValueError(
            f"checkpoint_steps must be None or strictly increasing integers in [0, steps={steps}]; "
            f"got {_short_repr(checkpoint_steps)}."
        )
    return tuple(int(t) for t in a)


def _split_init(init_params, num_seeds, network):
    """(per-seed initial parameters with a leading seed axis, shared ones): at most one is
    not None. rsd's layered networks take (W, b) layers (``network.from_layers`` builds
    their parameters); any other network takes what its ``from_layers`` takes (its
    ``to_layers`` layout), or its parameter pytree when it has neither."""
    if init_params is None:
        return None, None
    if getattr(network, "layer_shapes", None) is not None:
        return _split_layers(init_params, num_seeds, network)
    return _split_tree(init_params, num_seeds, network)


def _split_layers(init_params, num_seeds, network):
    dtype = jnp.result_type(float)
    try:
        layers = [(jnp.asarray(w, dtype), jnp.asarray(b, dtype)) for w, b in init_params]
    except (TypeError, ValueError):
        raise ValueError(
            "init_params must be a list of (W [in, out], b [out]) pairs, one per layer."
        ) from None
    shapes = network.layer_shapes
    if len(layers) != len(shapes):
        raise ValueError(
            f"init_params must hold {len(shapes)} (W, b) pairs for this network (one per "
            f"parametrized module); got {len(layers)}."
        )
    kinds = set()
    for n, ((w, b), (w_shape, b_shape)) in enumerate(zip(layers, shapes)):
        if w.shape == w_shape and b.shape == b_shape:
            kinds.add("shared")
        elif w.shape == (num_seeds,) + w_shape and b.shape == (num_seeds,) + b_shape:
            kinds.add("per_seed")
        else:
            raise ValueError(
                f"init_params[{n}] must have W {w_shape} and b {b_shape}, or both with a "
                f"leading seed axis of length {num_seeds}; got W {tuple(w.shape)}, "
                f"b {tuple(b.shape)}."
            )
        check_finite(f"init_params[{n}] W", w)
        check_finite(f"init_params[{n}] b", b)
    if len(kinds) > 1:
        raise ValueError("init_params must be all with or all without a leading seed axis.")
    return (layers, None) if kinds == {"per_seed"} else (None, layers)


def _split_tree(init_params, num_seeds, network):
    dtype = jnp.result_type(float)
    to_layers = getattr(network, "to_layers", lambda p: p)
    template = jax.eval_shape(lambda k: to_layers(network.init(k)), jax.random.key(0))
    expected, treedef = jax.tree.flatten(template)
    try:
        given = [jnp.asarray(a, dtype) for a in jax.tree.leaves(init_params)]
    except (TypeError, ValueError):
        given = None
    if given is None or len(given) != len(expected):
        raise ValueError(f"init_params must be a pytree of {len(expected)} arrays like this "
                         f"network's parameters; got {_short_repr(init_params)}.")
    kinds = set()
    for n, (a, e) in enumerate(zip(given, expected)):
        if a.shape == e.shape:
            kinds.add("shared")
        elif a.shape == (num_seeds,) + e.shape:
            kinds.add("per_seed")
        else:
            raise ValueError(f"init_params leaf {n} must have shape {e.shape}, or that with a "
                             f"leading seed axis of length {num_seeds}; got {tuple(a.shape)}.")
        check_finite(f"init_params leaf {n}", a)
    if len(kinds) > 1:
        raise ValueError("init_params must be all with or all without a leading seed axis.")
    tree = jax.tree.unflatten(treedef, given)
    return (tree, None) if kinds == {"per_seed"} else (None, tree)


def _per_seed(name, value, num_seeds, *, positive):
    """A number or [S] values as a float64 host array [S], validated (finite, > 0 or >= 0)."""
    try:
        a = np.asarray(value)
        if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number) or \
                np.iscomplexobj(a):
            raise TypeError
        a = a.astype(np.float64)
    except (TypeError, ValueError):
        a = None
    bound = "> 0" if positive else ">= 0"
    if a is None or a.ndim > 1 or a.ndim == 1 and a.shape[0] != num_seeds:
        raise ValueError(f"{name} must be a number or one number per seed (shape "
                         f"[{num_seeds}]), finite and {bound}; got {_short_repr(value)}.")
    ok = np.isfinite(a) & ((a > 0) if positive else (a >= 0))
    if not np.all(ok):
        raise ValueError(f"{name} must be finite and {bound}; got {_short_repr(value)}.")
    return np.broadcast_to(a, (num_seeds,)).copy()
