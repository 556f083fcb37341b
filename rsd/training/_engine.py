"""The training engine: many seeds of one setting, trained in one compiled program.

For one seed, ``lax.scan`` runs the steps; each step first records, in eval mode and
before the update, h at every requested hidden layer, y and w of the chosen pair
(through :mod:`rsd.quantities`) and the full-data half-MSE loss, then applies one
optax update. Seeds are batched with ``jax.vmap`` and run in chunks of a fixed
size (padded, so one compiled program serves every chunk and every later call
with the same shapes). Each seed's randomness (initialization, minibatch order,
dropout masks) comes from ``fold_in(root_key, seed)`` alone, so a seed's result
never depends on which seeds share its chunk.

Nothing raises inside the compiled program: a seed whose step would make its
parameters non-finite gets status ``DIVERGED``; that update and all later ones are
skipped (``jnp.where`` on the seed's own parameters), so it keeps its last finite
parameters and never disturbs the other seeds.
"""

from __future__ import annotations

import enum
import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .. import quantities as q
from .._validation import check_finite, check_int_range
from ._settings import Setting

__all__ = ["Status", "Run", "train"]

# Number of times the per-chunk program has been traced (tests check that a second
# call with the same shapes reuses the compiled program).
_TRACES = 0


class Status(enum.IntEnum):
    """Per-seed outcome of :func:`train` (stored as int32 in ``Run.status``)."""

    OK = 0
    """Every step's loss, activations and update were finite."""
    DIVERGED = 1
    """A step's loss, activations or gradient turned non-finite; the seed froze before it."""


class Run(eqx.Module):
    """Recorded trajectories of :func:`train`, S seeds × T steps (T = ``setting.steps``).

    Entry ``[s, t]`` is measured before the update of step t (t = 0 is the
    initialization), in eval mode, for seed ``seeds[s]``:

    * ``h``    [S, T, K]  ||φ_k(x_j) − φ_k(x_i)||² at hidden layer ``layers[k]``
    * ``y``    [S, T]     ||ŷ_j − ŷ_i||²
    * ``w``    [S, T]     Δŷ·(Δŷ − Δy*)
    * ``loss`` [S, T]     ½·mean over all training points and outputs of (ŷ − y*)²
    * ``e0``   [S]        ||(ŷ_i + ŷ_j)/2 − (y*_i + y*_j)/2||² at step 0
    * ``status`` [S] int32 (:class:`Status`), ``diverged_step`` [S] int32: the first
      step t whose loss, hidden activations or gradient were non-finite (T if none).
      Update t and all later ones are skipped: the parameters stay those of step t,
      so entries from t on repeat step t's values.
    * ``dx2``, ``dy2`` []: ||x_j − x_i||², ||y*_j − y*_i||² of the pair (i, j).
    * with ``tracked`` inputs (n of them) and M ``matrix_steps``:
      ``hidden_matrices`` [S, M, K', n, n] (layers ``matrix_layers``) and
      ``output_matrices`` [S, M, n, n], pairwise squared distances at those steps
      (step T means after the last update); otherwise None.
    * ``params``: the parameters after the last step, with a leading seed axis,
      when ``return_params=True``; otherwise None.
    """

    h: jax.Array
    y: jax.Array
    w: jax.Array
    loss: jax.Array
    e0: jax.Array
    status: jax.Array
    diverged_step: jax.Array
    seeds: jax.Array
    dx2: jax.Array
    dy2: jax.Array
    hidden_matrices: jax.Array | None
    output_matrices: jax.Array | None
    matrix_steps: jax.Array | None
    params: Any
    layers: tuple[int, ...] = eqx.field(static=True)
    matrix_layers: tuple[int, ...] | None = eqx.field(static=True)
    pair: tuple[int, int] = eqx.field(static=True)
    setting: Setting = eqx.field(static=True)

    @property
    def ok(self):
        return self.status == Status.OK


def train(
    setting: Setting,
    x,
    y,
    *,
    seeds,
    init_params=None,
    pair: tuple[int, int] = (0, 1),
    layers=None,
    tracked=None,
    matrix_steps=None,
    matrix_layers=None,
    chunk_size: int = 64,
    root_key=None,
    return_params: bool = False,
    progress: bool | None = None,
    unroll: int = 1,
    dropout_masks=None,
) -> Run:
    """Train ``setting``'s network on (x, y) once per seed and record the pair dynamics.

    Loss ½·mean((f(x) − y*)²) (times 2 for ``setting.loss == "mse"``), minimized by
    optax SGD/Adam for ``setting.steps`` steps (full batch, or reshuffled minibatches).

    Args:
        x, y: training data [n, in_dim], [n, out_dim].
        seeds: 1-D non-negative integers; seed s uses ``fold_in(root_key, s)``.
        init_params: start from these weights instead of a random initialization:
            a list of (W [in, out], b [out]) per parametrized module in forward order,
            each optionally with a leading axis of length ``len(seeds)``.
        pair: the indices (i, j) of the two points whose h, y, w are recorded.
        layers: rsd hidden layers to record (default ``setting.layers``, else all).
        tracked: inputs [n_t, in_dim] whose pairwise distance matrices are recorded
            at ``matrix_steps`` (default (0, steps)) for ``matrix_layers`` (default
            ``layers``) and the output.
        chunk_size: seeds per compiled chunk (memory is bounded by one chunk).
        root_key: a ``jax.random.key``; default ``jax.random.key(0)``.
        return_params: also return the final parameters.
        progress: show a tqdm bar over chunks (default: when there is more than one).
        unroll: ``lax.scan`` unroll factor (a performance knob; results are unchanged).
        dropout_masks: for the "dropout" architecture with full batch, replay given keep
            masks instead of drawing them (e.g. PyTorch's, to reproduce a reference run):
            one boolean array [steps, n, fan_in] per linear layer, shared by all seeds.
    """
    if not isinstance(setting, Setting):
        raise ValueError(f"setting must be an rsd.training.Setting; got {type(setting).__name__}.")
    # float32 unless float64 is switched on (jax_enable_x64), then float64 throughout.
    dtype = jnp.result_type(float)
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(y, dtype)
    _check_data(setting, x, y)
    n, in_dim = x.shape
    out_dim = y.shape[1]
    seeds_host = _check_seeds(seeds)
    check_int_range("chunk_size", chunk_size, 1)
    check_int_range("unroll", unroll, 1)
    if not isinstance(return_params, bool):
        raise ValueError(f"return_params must be True or False; got {return_params!r}.")
    i, j = _check_pair(pair, n)

    network = _make_network(setting, in_dim, out_dim)
    num_hidden = network.num_hidden
    layers = _check_layers("layers", layers if layers is not None else setting.layers, num_hidden)

    steps = setting.steps
    if tracked is not None:
        tracked = jnp.asarray(tracked, dtype)
        if tracked.ndim != 2 or tracked.shape[1] != in_dim or tracked.shape[0] < 2:
            raise ValueError(
                f"tracked must have shape [n_t >= 2, in_dim={in_dim}]; got {tuple(tracked.shape)}."
            )
        check_finite("tracked", tracked)
        matrix_layers = _check_layers("matrix_layers", matrix_layers if matrix_layers is not None
                                      else layers, num_hidden)
        mat_steps = _check_matrix_steps(matrix_steps if matrix_steps is not None else (0, steps),
                                        steps)
    elif matrix_steps is not None or matrix_layers is not None:
        raise ValueError("matrix_steps and matrix_layers need tracked inputs; got tracked=None.")
    else:
        matrix_layers, mat_steps = None, None

    masks = _check_masks(dropout_masks, setting, network, n)

    if root_key is None:
        root_key = jax.random.key(0)
    root_key = _typed_key(root_key)

    num_seeds = len(seeds_host)
    per_seed_init, shared_init = _split_init(init_params, num_seeds, network)
    # Seed counts share programs in power-of-two buckets (1, 2, 4, ...) up to chunk_size.
    chunk = min(chunk_size, 1 << (num_seeds - 1).bit_length())
    num_chunks = math.ceil(num_seeds / chunk)
    padded = num_chunks * chunk
    # Padding repeats the last seed; its duplicate results are dropped below.
    seed_ids = np.concatenate([seeds_host, np.full(padded - num_seeds, seeds_host[-1])])
    if per_seed_init is not None:
        per_seed_init = [tuple(np.concatenate([a, np.repeat(a[-1:], padded - num_seeds, 0)])
                               for a in layer) for layer in per_seed_init]

    slot = np.full(steps, -1, np.int32)
    final_slot, num_mats = -1, 0
    if mat_steps is not None:
        for k, t in enumerate(mat_steps):
            if t < steps:
                slot[t] = k
        final_slot = len(mat_steps) - 1 if mat_steps[-1] == steps else -1
        num_mats = len(mat_steps)

    # The compiled programs depend on the setting's structure only: not on its lr (an
    # argument), name, the data's distances or dims (taken from the data), the gain (it
    # acts through the initialization alone) or a dropout rate the network does not
    # use; a minibatch as large as the data is the full batch. The initialization
    # depends on the network alone.
    batch_size = setting.batch_size if setting.batch_size is not None and setting.batch_size < n \
        else None
    neutral = dict(name="", layers=None, dx2=1.0, dy2=0.5, in_dim=None, out_dim=None)
    if setting.architecture != "dropout":
        neutral["dropout_rate"] = 0.1
    structure = setting.replace(lr=1.0, batch_size=batch_size, gain=1.0, **neutral)
    init_structure = setting.replace(lr=1.0, batch_size=None, steps=1, optimizer="sgd",
                                     loss="half_mse", **neutral)
    program = _chunk_program(
        in_dim=in_dim, out_dim=out_dim, setting=structure, layers=layers,
        matrix_layers=matrix_layers, num_mats=num_mats, final_slot=final_slot,
        return_params=return_params, unroll=unroll, replay_masks=masks is not None,
    )
    lr = jnp.asarray(setting.lr, dtype)
    pair_idx = jnp.asarray([i, j], jnp.int32)
    slot = jnp.asarray(slot)

    show = progress if progress is not None else num_chunks > 1
    chunks = range(num_chunks)
    if show:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"train {setting.name or setting.architecture}", unit="chunk")
    outputs = []
    for c in chunks:
        sl = slice(c * chunk, (c + 1) * chunk)
        # The chunk's keys come from one small program (one dispatch, not three per seed:
        # on the host those dominated short runs); random initializations are made one
        # seed at a time by a program compiled once per network (not per chunk size:
        # random draws compile slowly).
        keys = _seed_keys(root_key, jnp.asarray(seed_ids[sl], jnp.uint32))
        if per_seed_init is not None:
            params = network.from_layers([tuple(jnp.array(a[sl], dtype) for a in layer)
                                          for layer in per_seed_init])
        elif shared_init is not None:
            params = network.from_layers([tuple(jnp.broadcast_to(a, (chunk,) + a.shape)
                                                for a in layer) for layer in shared_init])
        else:
            init = _init_program(in_dim, out_dim, init_structure)
            params = _stack([init(k) for k in keys[:, 0]])
        params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
        k_shuffle, k_dropout = keys[:, 1], keys[:, 2]
        outputs.append(program(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot, lr,
                               masks))
    out = jax.tree.map(lambda *a: jnp.concatenate(a)[:num_seeds], *outputs)

    return Run(
        h=out["h"], y=out["y"], w=out["w"], loss=out["loss"], e0=out["e0"],
        status=out["status"], diverged_step=out["diverged_step"],
        seeds=jnp.asarray(seeds_host),
        dx2=q.squared_distance(x[i], x[j]), dy2=q.squared_distance(y[i], y[j]),
        hidden_matrices=out.get("hidden_matrices"), output_matrices=out.get("output_matrices"),
        matrix_steps=None if mat_steps is None else jnp.asarray(mat_steps, jnp.int32),
        params=out.get("params"), layers=layers, matrix_layers=matrix_layers, pair=(i, j),
        setting=setting,
    )


@jax.jit
def _seed_keys(root_key, seeds):
    """[n, 3] keys: fold_in(root_key, seed) split into each seed's (init, minibatch order, dropout) keys."""
    return jax.vmap(lambda s: jax.random.split(jax.random.fold_in(root_key, s), 3))(seeds)


@functools.lru_cache(maxsize=64)
def _init_program(in_dim, out_dim, setting):
    """jit(network.init) for one key, compiled once per network shape."""
    return jax.jit(_make_network(setting, in_dim, out_dim).init)


def _stack(trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


@functools.lru_cache(maxsize=64)
def _chunk_program(*, in_dim, out_dim, setting, layers, matrix_layers, num_mats, final_slot,
                   return_params, unroll, replay_masks=False):
    """The jitted program that trains one chunk of seeds (cached per static configuration)."""
    network = _make_network(setting, in_dim, out_dim)
    one = functools.partial(
        _train_one_seed, network=network, setting=setting, layers=layers,
        matrix_layers=matrix_layers, num_mats=num_mats, final_slot=final_slot,
        return_params=return_params, unroll=unroll,
    )
    batched = jax.vmap(one, in_axes=(0, 0, 0, None, None, None, None, None, None, None))

    def program(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot, lr, masks):
        global _TRACES
        _TRACES += 1
        return batched(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot, lr, masks)

    # The chunk's initial parameters are fresh arrays made by train(); with return_params
    # their buffers can hold the final parameters (without, nothing could reuse them).
    return jax.jit(program, donate_argnums=0 if return_params else ())


def _train_one_seed(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot, lr, masks, *,
                    network, setting, layers, matrix_layers, num_mats, final_slot,
                    return_params, unroll):
    """Train ONE seed for ``setting.steps`` steps from ``params``; vmapped by the caller."""
    if setting.optimizer == "sgd":
        optimizer = optax.sgd(lr)
    else:
        optimizer = optax.adam(lr)
    opt_state = optimizer.init(params)

    n = x.shape[0]
    i, j = pair_idx[0], pair_idx[1]
    target_i, target_j = y[i], y[j]
    loss_scale = 2.0 if setting.loss == "mse" else 1.0
    dropout = setting.architecture == "dropout"
    batch_size = setting.batch_size
    # Full batch without dropout: the training forward pass is the eval pass on all
    # the data, so one pass serves both the gradient and the records.
    shared_forward = batch_size is None and not dropout
    batches_per_epoch = 1 if batch_size is None else math.ceil(n / batch_size)

    def records(out, hid):
        h = jnp.stack([q.representation_distance(hid[k][i], hid[k][j]) for k in layers])
        return dict(
            h=h,
            y=q.output_distance(out[i], out[j]),
            w=q.alignment(out[i], out[j], target_i, target_j),
            e0=q.mean_output_error(out[i], out[j], target_i, target_j),
            loss=q.half_mse(out, y),
        )

    def matrices(p):
        out, hid = network.apply(p, tracked, train=False)
        return (jnp.stack([q.pairwise_squared_distances(hid[k]) for k in matrix_layers]),
                q.pairwise_squared_distances(out))

    def batch_of(t):
        """Indices and validity mask of step t's minibatch (epoch reshuffled by its key)."""
        epoch, b = t // batches_per_epoch, t % batches_per_epoch
        perm = jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), n)
        perm = jnp.concatenate([perm, jnp.zeros(batches_per_epoch * batch_size - n, perm.dtype)])
        idx = lax.dynamic_slice(perm, (b * batch_size,), (batch_size,))
        valid = b * batch_size + jnp.arange(batch_size) < n
        return idx, valid

    def training_loss(p, t):
        if shared_forward:
            out, hid = network.apply(p, x, train=False)
            return loss_scale * q.half_mse(out, y), (out, hid, hid)
        if batch_size is None:
            xb, yb, scale = x, y, 1.0
            mask = None
        else:
            idx, mask = batch_of(t)
            xb, yb = x[idx], y[idx]
            # Mean over the valid rows only: zero the padded rows, rescale the mean.
            scale = batch_size / jnp.sum(mask)
        if masks is not None:
            out, hid = network.apply(p, xb, train=True, masks=tuple(m[t] for m in masks))
        else:
            out, hid = network.apply(p, xb, train=dropout,
                                     key=jax.random.fold_in(k_dropout, t) if dropout else None)
        if mask is not None:
            m = mask[:, None].astype(out.dtype)
            out, yb = out * m, yb * m
        return loss_scale * scale * q.half_mse(out, yb), (None, None, hid)

    if num_mats:
        n_t = tracked.shape[0]
        mats0 = (jnp.zeros((num_mats, len(matrix_layers), n_t, n_t), x.dtype),
                 jnp.zeros((num_mats, n_t, n_t), x.dtype))
    else:
        mats0 = None

    def step(carry, t):
        params, opt_state, status, diverged_step, mats = carry
        (train_loss, (out, hid, train_hid)), grads = jax.value_and_grad(
            training_loss, has_aux=True)(params, t)
        if not shared_forward:
            out, hid = network.apply(params, x, train=False)
        rec = records(out, hid)
        if num_mats:
            mats = lax.cond(
                slot[t] >= 0,
                lambda m: jax.tree.map(lambda buf, new: buf.at[slot[t]].set(new), m,
                                       matrices(params)),
                lambda m: m,
                mats,
            )
        # Divergence is decided BEFORE the update, from small arrays only: every weight
        # gradient is a sum over samples (and positions) of layer input ⊗ back-propagated
        # signal; the inputs are x and the hidden records, and the bias gradient is the
        # sum of the signals, non-finite iff one of them is. So finite loss, hiddens and
        # bias gradients mean a finite update (float32 overflow of a product of finite
        # factors aside, which makes the next step's loss non-finite) — with no extra pass
        # over the weights, and the update and the freeze fuse into one elementwise loop.
        bias_grads = [b for _, b in network.to_layers(grads)]
        finite = (jnp.isfinite(rec["loss"]) & jnp.isfinite(train_loss)
                  & _all_finite(bias_grads) & _all_finite(train_hid))
        # A seed that was ok and now fails freezes here; a diverged seed stays frozen.
        accept = (status == Status.OK) & finite
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        params = _select(accept, new_params, params)
        opt_state = _select(accept, new_opt_state, opt_state)
        newly = (status == Status.OK) & ~finite
        diverged_step = jnp.where(newly, t, diverged_step)
        status = jnp.where(newly, jnp.int32(Status.DIVERGED), status)
        return (params, opt_state, status, diverged_step, mats), rec

    carry0 = (params, opt_state, jnp.int32(Status.OK), jnp.int32(setting.steps), mats0)
    (params, _, status, diverged_step, mats), rec = lax.scan(
        step, carry0, jnp.arange(setting.steps, dtype=jnp.int32), unroll=unroll)

    result = dict(h=rec["h"], y=rec["y"], w=rec["w"], loss=rec["loss"], e0=rec["e0"][0],
                  status=status, diverged_step=diverged_step)
    if num_mats:
        if final_slot >= 0:
            mats = jax.tree.map(lambda buf, new: buf.at[final_slot].set(new), mats,
                                matrices(params))
        result["hidden_matrices"], result["output_matrices"] = mats
    if return_params:
        result["params"] = params
    return result


def _make_network(setting, in_dim, out_dim):
    from ..networks import make_network

    return make_network(
        setting.architecture, activation=setting.activation, width=setting.width,
        depth=setting.depth, gain=setting.gain, in_dim=in_dim, out_dim=out_dim,
        dropout_rate=setting.dropout_rate,
    )


def _all_finite(tree):
    leaves = jax.tree.leaves(tree)
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(a)) for a in leaves],
                            jnp.bool_(True))


def _select(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _typed_key(key):
    """A typed PRNG key from a typed key, raw uint32 key data or an integer seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    try:
        key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key
        return jax.random.wrap_key_data(key)
    except (TypeError, ValueError):
        raise ValueError("root_key must be a JAX PRNG key, raw uint32 key data or an integer; "
                         f"got {key!r}.") from None


# --------------------------------------------------------------------------- checks


def _check_data(setting, x, y):
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(
            "x and y must have shapes [n, in_dim] and [n, out_dim] with the same n >= 2; got "
            f"{tuple(x.shape)} and {tuple(y.shape)}."
        )
    if setting.in_dim is not None and x.shape[1] != setting.in_dim:
        raise ValueError(f"x must have setting.in_dim={setting.in_dim} columns; got {x.shape[1]}.")
    if setting.out_dim is not None and y.shape[1] != setting.out_dim:
        raise ValueError(
            f"y must have setting.out_dim={setting.out_dim} columns; got {y.shape[1]}.")
    check_finite("x", x)
    check_finite("y", y)


def _check_seeds(seeds):
    a = np.asarray(seeds)
    if a.ndim == 0:
        a = a[None]
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"seeds must be a non-empty 1-D sequence of integers; got {seeds!r}.")
    if np.any(a < 0) or np.any(a >= 2**31):
        raise ValueError("seeds must be integers in [0, 2**31).")
    return a.astype(np.int64)


def _check_pair(pair, n):
    try:
        i, j = (int(p) for p in pair)
    except (TypeError, ValueError):
        raise ValueError(f"pair must be two point indices (i, j); got {pair!r}.") from None
    if not (0 <= i < n and 0 <= j < n) or i == j:
        raise ValueError(f"pair must be two different indices in [0, {n}); got {pair!r}.")
    return i, j


def _check_layers(name, layers, num_hidden):
    if layers is None:
        return tuple(range(num_hidden))
    if isinstance(layers, (int, np.integer)):
        layers = (layers,)
    layers = tuple(layers)
    if not layers or not all(isinstance(k, (int, np.integer)) and 0 <= k < num_hidden
                             for k in layers):
        raise ValueError(
            f"{name} must be a non-empty sequence of hidden-layer indices in [0, {num_hidden}); "
            f"got {layers!r}."
        )
    return tuple(int(k) for k in layers)


def _check_masks(masks, setting, network, n):
    if masks is None:
        return None
    if setting.architecture != "dropout" or setting.batch_size is not None and \
            setting.batch_size < n:
        raise ValueError("dropout_masks need the 'dropout' architecture trained full batch.")
    masks = tuple(jnp.asarray(m, bool) for m in masks)
    shapes = [(setting.steps, n, w[0]) for w, _ in network.layer_shapes]
    if [m.shape for m in masks] != shapes:
        raise ValueError(
            f"dropout_masks must be {len(shapes)} boolean arrays of shapes {shapes} "
            f"([steps, n, fan_in] per linear layer); got {[tuple(m.shape) for m in masks]}."
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


def _split_init(init_params, num_seeds, network):
    """(per-seed layers with a leading seed axis, shared layers): at most one is not None."""
    if init_params is None:
        return None, None
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
