"""The training engine: many seeds of one setting, trained in one compiled program.

For one seed, ``lax.scan`` runs the steps in record units of ``record_every`` steps
(default 1): the first step of a unit first records, in eval mode and before the update,
h at every requested hidden layer, y and w of the chosen pair (through
:mod:`rsd.quantities`) and the full-data half-MSE loss; every step then applies one
optax update. Only record steps evaluate the network on the whole data set, so a
minibatch step between records costs one minibatch's forward and backward pass; the
minibatch order is one permutation per epoch, drawn at the epoch's first step and
carried. Seeds are batched with ``jax.vmap`` and run in chunks of a fixed size
(padded, so one compiled program serves every chunk and every later call with the
same shapes). Each seed's randomness (initialization, minibatch order, dropout masks)
comes from ``fold_in(root_key, seed)`` alone, so a seed's result never depends on which
seeds share its chunk.

Each seed may train on its own data set (x [S, n, in_dim], y [S, n, out_dim]): the
data axis is vmapped with the seeds, so a whole grid of data sets is one program.

Nothing raises inside the compiled program: a seed whose step would make its
parameters non-finite gets status ``DIVERGED``; that update and all later ones are
skipped (``jnp.where`` on the seed's own parameters), so it keeps its last finite
parameters and never disturbs the other seeds. Early stopping (``stop_loss``) freezes
a seed the same way at a record step; a chunk then runs blocks of record units in a
``lax.while_loop`` that ends once every seed has stopped, diverged or finished.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import math
import os
import warnings
from typing import Any, Callable, NamedTuple

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
# Steps per block of the early-stopping loop (rounded to whole record units, at least
# one): a chunk runs at most this many steps past the step where its last seed stopped
# or diverged; each block costs one loop iteration.
_STOP_BLOCK = 128


class Status(enum.IntEnum):
    """Per-seed outcome of :func:`train` (stored as int32 in ``Run.status``)."""

    OK = 0
    """Every step's loss, activations and update were finite."""
    DIVERGED = 1
    """A step's loss, activations or gradient turned non-finite; the seed froze before it."""


class Run(eqx.Module):
    """Recorded trajectories of :func:`train`: S seeds × T' records.

    With ``train(..., record_every=k)`` records are taken at steps t = 0, k, 2k, ... <
    T (T = ``setting.steps``), so T' = ceil(T / k) (T' = T and record r at step r by
    default); ``record_steps`` holds the step of each record. Record ``[s, r]`` is
    measured before the update of step ``record_steps[r]`` (step 0 is the
    initialization), in eval mode, for seed ``seeds[s]``:

    * ``h``    [S, T', K]  ||φ_k(x_j) − φ_k(x_i)||² at hidden layer ``layers[k]``
    * ``y``    [S, T']     ||ŷ_j − ŷ_i||²
    * ``w``    [S, T']     Δŷ·(Δŷ − Δy*)
    * ``loss`` [S, T']     ½·mean over all training points and outputs of (ŷ − y*)²
    * ``record_steps`` [T'] int32: the step of each record, ``k · arange(T')``
    * ``e0``   [S]        ||(ŷ_i + ŷ_j)/2 − (y*_i + y*_j)/2||² at step 0
    * ``status`` [S] int32 (:class:`Status`), ``diverged_step`` [S] int32: the first
      step t whose training loss, training activations or gradient (or, at a record
      step, records) were non-finite (T if none). Update t and all later ones are
      skipped: the parameters stay those of step t, so every record of a step >= t
      is the record of those frozen parameters.
    * ``stop_step`` [S] int32: with ``train(..., stop_loss=ℓ)``, the first record step t
      whose recorded loss was below ℓ (T if none, and always T without ``stop_loss``);
      the seed froze there as on divergence (records from t on repeat step t's), its
      status stays OK.
    * ``lr``, ``gain`` [S]: each seed's learning rate and initialization gain
      (``setting.lr`` / ``setting.gain`` unless ``train`` was given per-seed values).
    * ``dx2``, ``dy2``: ||x_j − x_i||², ||y*_j − y*_i||² of the pair (i, j): scalars
      [] for shared data, [S] when x or y is given per seed.
    * with ``tracked`` inputs (n of them) and M ``matrix_steps``:
      ``hidden_matrices`` [S, M, K', n, n] (layers ``matrix_layers``) and
      ``output_matrices`` [S, M, n, n], pairwise squared distances at those steps
      (any steps, not only record steps; step T means after the last update);
      otherwise None.
    * ``params``: the parameters after the last step, with a leading seed axis,
      when ``return_params=True``; otherwise None.
    """

    h: jax.Array
    y: jax.Array
    w: jax.Array
    loss: jax.Array
    record_steps: jax.Array
    e0: jax.Array
    status: jax.Array
    diverged_step: jax.Array
    stop_step: jax.Array
    seeds: jax.Array
    lr: jax.Array
    gain: jax.Array
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
    chunk_size: int | None = None,
    root_key=None,
    return_params: bool = False,
    progress: bool | None = None,
    unroll: int = 1,
    dropout_masks=None,
    stop_loss: float | None = None,
    record_every: int = 1,
    lr=None,
    gain=None,
    devices=None,
    optimizer: optax.GradientTransformation | None = None,
    memory_budget: int | None = None,
) -> Run:
    """Train ``setting``'s network on (x, y) once per seed and record the pair dynamics.

    Loss ½·mean((f(x) − y*)²) (times 2 for ``setting.loss == "mse"``), minimized by
    optax SGD/Adam for ``setting.steps`` steps (full batch, or reshuffled minibatches).

    Args:
        x: training inputs, shared by all seeds: [n, in_dim]; or one data set per
            seed: [S, n, in_dim] with S = len(seeds) (seed ``seeds[s]`` trains on
            ``x[s], y[s]``; each of x, y may be shared or per seed). All data sets go
            through the same compiled program.
        y: training targets, [n, out_dim] or [S, n, out_dim], like ``x``.
        seeds: 1-D non-negative integers; seed s uses ``fold_in(root_key, s)``, split
            into three keys ``(k_init, k_order, k_dropout) = split(fold_in(root_key, s), 3)``:
            the random initialization, the minibatch order (epoch e visits the data in
            the order ``permutation(fold_in(k_order, e), n)``, in minibatches of
            ``setting.batch_size``, the last one smaller when it does not divide n) and
            the dropout masks.
        init_params: start from these weights instead of a random initialization:
            a list of (W [in, out], b [out]) per parametrized module in forward order,
            each optionally with a leading axis of length ``len(seeds)``.
        pair: the indices (i, j) of the two points whose h, y, w are recorded.
        layers: rsd hidden layers to record (default ``setting.layers``, else all).
        tracked: inputs [n_t, in_dim] (shared by all seeds) whose pairwise distance
            matrices are recorded at ``matrix_steps`` (default (0, steps)) for
            ``matrix_layers`` (default ``layers``) and the output.
        chunk_size: seeds per compiled chunk (memory is bounded by one chunk). None
            (default): the largest power of two, at most 64 (``AUTO_CHUNK_MAX``), whose
            estimated footprint (parameters, gradients, optimizer state, activations of
            the full data, recorded series and matrices, per seed) fits
            ``memory_budget`` and, on CPU devices, whose parameters and optimizer
            state fit ``AUTO_CHUNK_CACHE_BYTES`` per device (a training step streams
            every weight several times: a chunk that stays in cache trains each seed
            up to twice as fast as one that spills to memory). A chunk that still
            runs out of device memory is halved and retried (a warning says so), down
            to one seed per device.
        memory_budget: bytes for one chunk; default: the env var ``RSD_MEMORY_BUDGET``,
            else half of the device's free memory (``Device.memory_stats``), or on a
            CPU half of the host's available memory.
        root_key: a ``jax.random.key``; default ``jax.random.key(0)``.
        return_params: also return the final parameters.
        progress: show a tqdm bar over chunks (default: when there is more than one).
        unroll: ``lax.scan`` unroll factor (a performance knob).
        dropout_masks: for the "dropout" architecture with full batch, replay given keep
            masks instead of drawing them (e.g. PyTorch's, to reproduce a reference run):
            one boolean array [steps, n, fan_in] per linear layer, shared by all seeds.
        stop_loss: None (train every seed for ``setting.steps`` steps), or a finite
            number > 0: a seed whose recorded loss at step t (the full-data half-MSE
            before update t) is below it stops at t: update t and all later ones are
            skipped, ``Run.stop_step`` is t and records from t on repeat step t's. A
            chunk ends when all its seeds have stopped, diverged or run all steps.
            With ``record_every=k`` only record steps (multiples of k) can stop a seed.
        record_every: k >= 1: record h, y, w and the loss at steps 0, k, 2k, ... only
            (``Run.record_steps``); steps between records evaluate only their minibatch
            (no full-data pass), so a large k makes minibatch training on large data
            sets cheap. k = 1 (the default) records every step.
        lr: the learning rate as data: None (``setting.lr``), a number, or one value
            per seed [S] (finite > 0). Seeds with different learning rates share one
            compiled program. Seed s with ``lr[s]``, ``gain[s]`` gives the result of
            ``setting.replace(lr=lr[s], gain=gain[s])`` to float32 round-off.
        gain: the initialization gain as data, like ``lr``: None (``setting.gain``), a
            number or one value per seed [S] (finite > 0). A gain acts through the
            initialization alone (one small program per distinct gain).
        optimizer: None (``setting.optimizer`` by name, :func:`named_optimizer`), or any
            ``optax.GradientTransformation``, used as given. To take ``lr`` (per seed),
            it must carry an injected learning rate (``optax.inject_hyperparams``, e.g.
            ``optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)``);
            without ``lr`` its own hyperparameters stand and ``Run.lr`` is NaN.
        devices: None (the default device, or the devices of an enclosing
            :func:`use_devices`), ``"all"`` (every local device), an int n
            (the first n local devices) or a sequence of devices: the seed axis of each
            chunk is sharded over them (a 1-D ``jax.sharding.Mesh`` with axis
            ``"seeds"``; the chunk size is rounded up to a multiple of their number).

    Determinism: the same call (same seeds, data, ``chunk_size``, ``unroll``, batching)
    gives bitwise identical results on the same machine and software. Results of one
    seed across different ``chunk_size``, seed batchings or ``unroll`` agree to float32
    round-off, not necessarily bitwise (XLA may order the sums of differently batched
    programs differently; chaotic trajectories amplify such differences over long runs).
    """
    if not isinstance(setting, Setting):
        raise ValueError(f"setting must be an rsd.training.Setting; got {type(setting).__name__}.")
    # float32 unless float64 is switched on (jax_enable_x64), then float64 throughout.
    dtype = jnp.result_type(float)
    seeds_host = _check_seeds(seeds)
    num_seeds = len(seeds_host)
    x = _as_float_array("x", x, dtype)
    y = _as_float_array("y", y, dtype)
    x_per_seed, y_per_seed = _check_data(setting, x, y, num_seeds)
    n, in_dim = x.shape[-2:]
    out_dim = y.shape[-1]
    if chunk_size is not None:
        check_int_range("chunk_size", chunk_size, 1)
    if memory_budget is not None:
        check_int_range("memory_budget", memory_budget, 1)
    check_int_range("unroll", unroll, 1)
    if not isinstance(return_params, bool):
        raise ValueError(f"return_params must be True or False; got {return_params!r}.")
    stop_loss = _check_stop_loss(stop_loss)
    check_int_range("record_every", record_every, 1)
    record_every = int(record_every)
    i, j = _check_pair(pair, n)
    lr_host = _per_seed("lr", setting.lr if lr is None else lr, num_seeds, positive=True)
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError("optimizer must be None or an optax.GradientTransformation; got "
                         f"{_short_repr(optimizer)}.")
    set_lr = optimizer is None or lr is not None
    gain_host = _per_seed("gain", setting.gain if gain is None else gain, num_seeds,
                          positive=True)
    mesh = _mesh(_DEFAULT_DEVICES.get() if devices is None else devices)
    num_devices = 1 if mesh is None else mesh.size

    network = _make_network(setting, in_dim, out_dim)
    num_hidden = network.num_hidden
    layers = _check_layers("layers", layers if layers is not None else setting.layers, num_hidden)

    steps = setting.steps
    # A record_every beyond the run records step 0 only; clipping it keeps one program.
    record_every = min(record_every, steps)
    num_records = math.ceil(steps / record_every)
    if tracked is not None:
        tracked = _as_float_array("tracked", tracked, dtype)
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

    per_seed_init, shared_init = _split_init(init_params, num_seeds, network)
    if optimizer is not None and lr is not None and not _has_injected_lr(
            optimizer, jax.eval_shape(network.init, jax.random.key(0))):
        raise ValueError("lr needs an optimizer with an injected learning rate "
                         "(optax.inject_hyperparams(...)(learning_rate=...)); the given "
                         "optimizer has none: pass lr=None to use its own.")
    slot = np.full(steps, -1, np.int32)
    final_slot, num_mats = -1, 0
    if mat_steps is not None:
        for k, t in enumerate(mat_steps):
            if t < steps:
                slot[t] = k
        final_slot = len(mat_steps) - 1 if mat_steps[-1] == steps else -1
        num_mats = len(mat_steps)

    # Seed counts share programs in power-of-two buckets (1, 2, 4, ...) up to the chunk
    # size: the given one, or the largest power of two whose footprint fits the memory.
    per_seed_bytes = _seed_footprint(
        network, setting, n=n, num_records=num_records, num_layers=len(layers),
        num_mats=num_mats, matrix_layers=matrix_layers, tracked=tracked,
        data_per_seed=(x.shape[-2] * x.shape[-1] if x_per_seed else 0)
        + (y.shape[-2] * y.shape[-1] if y_per_seed else 0), dtype=dtype)
    if chunk_size is None:
        budget = _memory_budget(memory_budget, mesh)
        chunk_size = _auto_chunk(per_seed_bytes, budget,
                                 _cache_chunk(_state_bytes(network, setting, dtype), mesh))
    chunk = min(chunk_size, 1 << (num_seeds - 1).bit_length())
    chunk = -(-chunk // num_devices) * num_devices

    # The compiled programs depend on the setting's structure only (Setting.structure:
    # lr and gain are per-seed data, the gain acting through the initialization alone);
    # a minibatch as large as the data is the full batch. The initialization depends on
    # the network alone.
    batch_size = setting.batch_size if setting.batch_size is not None and setting.batch_size < n \
        else None
    structure = setting.structure().replace(batch_size=batch_size)
    init_structure = setting.structure().replace(batch_size=None, steps=1, optimizer="sgd",
                                                 loss="half_mse")
    program = _chunk_program(
        in_dim=in_dim, out_dim=out_dim, setting=structure, layers=layers,
        matrix_layers=matrix_layers, num_mats=num_mats, final_slot=final_slot,
        return_params=return_params, unroll=unroll, replay_masks=masks is not None,
        data_axes=(0 if x_per_seed else None, 0 if y_per_seed else None),
        record_every=record_every,
        stop_block=None if stop_loss is None else
        min(num_records, max(1, _STOP_BLOCK // record_every)),
        optimizer=optimizer, set_lr=set_lr,
    )
    stop_arg = None if stop_loss is None else jnp.asarray(stop_loss, dtype)
    pair_idx = jnp.asarray([i, j], jnp.int32)
    slot = jnp.asarray(slot)
    mat_times = None if mat_steps is None else jnp.asarray(mat_steps, jnp.int32)

    show = progress if progress is not None else num_seeds > chunk
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_seeds, desc=f"train {setting.name or setting.architecture}",
                   unit="seed")

    shared_chunk = {}  # chunk size -> the shared initial parameters broadcast to it

    def run_chunk(idx):
        """Train seeds ``idx`` (a chunk, the last one padded by repeating its last seed:
        its data and initialization too; the duplicates' results are dropped)."""
        # The chunk's keys come from one small program (one dispatch, not three per seed:
        # on the host those dominated short runs); random initializations are made one
        # seed at a time by a program compiled once per network (not per chunk size:
        # random draws compile slowly).
        size = len(idx)
        keys = _seed_keys(root_key, jnp.asarray(seeds_host[idx], jnp.uint32))
        if per_seed_init is not None:
            params = network.from_layers([tuple(jnp.asarray(a[idx], dtype) for a in layer)
                                          for layer in per_seed_init])
        elif shared_init is not None:
            # Without return_params the program does not donate its parameters, so every
            # chunk can start from one broadcast copy (a fresh one per chunk costs a
            # chunk-sized allocation, page faults included: ~7 ms per chunk of the default
            # MLP with one seed per chunk).
            if return_params:
                params = network.from_layers(_broadcast_seeds(shared_init, size))
            else:
                if size not in shared_chunk:
                    shared_chunk[size] = network.from_layers(_broadcast_seeds(shared_init, size))
                params = shared_chunk[size]
        else:
            params = _stack([
                _init_program(in_dim, out_dim, init_structure.replace(gain=float(g)))(k)
                for k, g in zip(keys[:, 0], gain_host[idx])])
        params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
        k_shuffle, k_dropout = keys[:, 1], keys[:, 2]
        xc = x[idx] if x_per_seed else x
        yc = y[idx] if y_per_seed else y
        lrc = jnp.asarray(lr_host[idx], dtype)
        if mesh is not None:
            params, k_shuffle, k_dropout, lrc = _shard((params, k_shuffle, k_dropout, lrc), mesh)
            xc, yc = (_shard(a, mesh) if per else _replicate(a, mesh)
                      for a, per in ((xc, x_per_seed), (yc, y_per_seed)))
        out = program(params, k_shuffle, k_dropout, xc, yc, pair_idx, tracked, slot,
                      mat_times, lrc, stop_arg, masks)
        # Errors of an asynchronous run (running out of memory) surface here.
        return jax.block_until_ready(out)

    outputs, start = [], 0
    while start < num_seeds:
        idx = np.minimum(np.arange(start, start + chunk), num_seeds - 1)
        try:
            out = run_chunk(idx)
        except Exception as error:  # noqa: BLE001 -- only out-of-memory is retried
            if not _is_out_of_memory(error) or chunk <= num_devices:
                raise
            chunk = max(num_devices, chunk // 2 // num_devices * num_devices)
            warnings.warn(f"train: a chunk ran out of device memory; retrying with "
                          f"{chunk} seeds per chunk.", RuntimeWarning, stacklevel=2)
            continue
        real = min(chunk, num_seeds - start)
        outputs.append(out if real == chunk else jax.tree.map(lambda a: a[:real], out))
        start += real
        if bar is not None:
            bar.update(real)
    if bar is not None:
        bar.close()
    out = outputs[0] if len(outputs) == 1 else \
        jax.tree.map(lambda *a: jnp.concatenate(a), *outputs)
    stop_step = out.get("stop_step")
    if stop_step is None:
        stop_step = jnp.full((num_seeds,), steps, jnp.int32)

    if x_per_seed or y_per_seed:
        xs = x if x_per_seed else jnp.broadcast_to(x, (num_seeds,) + x.shape)
        ys = y if y_per_seed else jnp.broadcast_to(y, (num_seeds,) + y.shape)
        dx2, dy2 = q.squared_distance(xs[:, i], xs[:, j]), q.squared_distance(ys[:, i], ys[:, j])
    else:
        dx2, dy2 = q.squared_distance(x[i], x[j]), q.squared_distance(y[i], y[j])
    return Run(
        h=out["h"], y=out["y"], w=out["w"], loss=out["loss"],
        record_steps=jnp.arange(num_records, dtype=jnp.int32) * record_every, e0=out["e0"],
        status=out["status"], diverged_step=out["diverged_step"], stop_step=stop_step,
        seeds=jnp.asarray(seeds_host),
        lr=jnp.asarray(lr_host if set_lr else np.full(num_seeds, np.nan), dtype),
        gain=jnp.asarray(gain_host, dtype), dx2=dx2, dy2=dy2,
        hidden_matrices=out.get("hidden_matrices"), output_matrices=out.get("output_matrices"),
        matrix_steps=mat_times, params=out.get("params"), layers=layers,
        matrix_layers=matrix_layers, pair=(i, j), setting=setting,
    )


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


_DEFAULT_DEVICES: contextvars.ContextVar = contextvars.ContextVar("rsd_default_devices", default=None)


@contextlib.contextmanager
def use_devices(devices):
    """Within the block, ``train(devices=None)`` shards the seed axis over ``devices``
    (None, ``"all"``, an int n or a sequence of devices, as ``train``'s argument), so code
    that calls ``train`` (the experiments) runs on several devices without passing them
    down. Checked on entry; the results are those of one device (bitwise on the CPU)."""
    _mesh(devices)
    token = _DEFAULT_DEVICES.set(devices)
    try:
        yield
    finally:
        _DEFAULT_DEVICES.reset(token)


def _mesh(devices):
    """None, or a 1-D mesh with axis "seeds" over the requested local devices."""
    if devices is None:
        return None
    local = jax.local_devices()
    if isinstance(devices, str) and devices == "all":
        chosen = local
    elif _is_index(devices):
        if not 1 <= int(devices) <= len(local):
            raise ValueError(f"devices must be in [1, {len(local)}] (local devices); "
                             f"got {devices}.")
        chosen = local[:int(devices)]
    else:
        try:
            chosen = list(devices)
        except TypeError:
            chosen = None
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen) or \
                len(set(chosen)) != len(chosen):
            raise ValueError("devices must be None, 'all', a number of local devices or a "
                             f"sequence of distinct jax devices; got {_short_repr(devices)}.")
    return jax.sharding.Mesh(np.asarray(chosen), ("seeds",))


def _shard(tree, mesh):
    """Place every leaf's leading (seed) axis across the mesh."""
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))
    return jax.device_put(tree, spec)


def _replicate(tree, mesh):
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


@functools.lru_cache(maxsize=None)
def named_optimizer(name: str) -> optax.GradientTransformation:
    """The optax transformation of ``Setting.optimizer`` ``name`` ("sgd": plain SGD,
    "adam": optax defaults = PyTorch's), with its learning rate injected
    (``optax.inject_hyperparams``): the rate is a value in the optimizer state
    (``state.hyperparams["learning_rate"]``), so seeds with different rates share one
    compiled program. One object per name (a stable cache key)."""
    factory = {"sgd": optax.sgd, "adam": optax.adam}[name]
    return optax.inject_hyperparams(factory)(learning_rate=1.0)


def _with_learning_rate(opt_state, lr):
    """``opt_state`` with its injected learning rate set to ``lr``."""
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
    return opt_state._replace(hyperparams=hyper)


def _has_injected_lr(optimizer, params) -> bool:
    state = jax.eval_shape(optimizer.init, params)
    hyper = getattr(state, "hyperparams", None)
    return isinstance(hyper, dict) and "learning_rate" in hyper


AUTO_CHUNK_MAX = 64
"""The largest chunk ``train`` chooses by itself (more seeds per program stop paying on a
CPU; pass ``chunk_size`` for larger chunks on an accelerator)."""


def _seed_footprint(network, setting, *, n, num_records, num_layers, num_mats, matrix_layers,
                    tracked, data_per_seed, dtype):
    """Estimated bytes one seed needs in a chunk: parameters four times (the parameters,
    their gradient, the update and the new parameters) plus the optimizer's moments,
    every hidden layer's activations on the full data three times (forward values,
    pre-activations, backward signals), the recorded series, the tracked matrices, and
    per-seed data."""
    itemsize = jnp.dtype(dtype).itemsize
    n_params = sum(math.prod(w) + math.prod(b) for w, b in network.layer_shapes)
    moments = 2 if setting.optimizer == "adam" else 0
    hidden = sum(math.prod(w[1:]) for w, _ in network.layer_shapes[:-1])
    activations = 3 * n * max(hidden, 1) * (1 if setting.architecture != "cnn" else
                                            setting.width)
    records = num_records * (num_layers + 4)
    mats = 0
    if num_mats:
        mats = num_mats * (len(matrix_layers) + 1) * tracked.shape[0] ** 2
    return itemsize * (n_params * (4 + moments) + activations + records + mats + data_per_seed)


def _memory_budget(memory_budget, mesh):
    """Bytes available to one chunk (see ``train``'s ``memory_budget``)."""
    if memory_budget is not None:
        return int(memory_budget)
    env = os.environ.get("RSD_MEMORY_BUDGET")
    if env:
        try:
            value = int(float(env))
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"RSD_MEMORY_BUDGET must be a number of bytes >= 1; got {env!r}.")
        return value
    devices = list(mesh.devices.flat) if mesh is not None else [jax.devices()[0]]
    free = []
    for device in devices:
        stats = None
        try:
            stats = device.memory_stats()
        except Exception:  # noqa: BLE001 -- a backend without memory stats
            stats = None
        if stats and "bytes_limit" in stats:
            free.append(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    if free:
        return len(free) * min(free) // 2
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 2**31


AUTO_CHUNK_CACHE_BYTES = 16 * 2**20
"""On CPU devices, the most bytes of parameters and optimizer state that ``train`` puts
in one chunk per device (``chunk_size=None``). A step reads every weight in the forward
and the backward pass and reads and writes it in the update: while a chunk's weights
stay in the caches those passes run at cache speed, once they spill every pass goes to
memory. Measured on a 2-core CPU (2 MiB L2 per core, shared with other jobs), seed-steps
of the paper's default MLP (19 MB of weights per seed) were twice as fast one seed per
chunk as 4 or 16 per chunk, and the narrow one (0.2 MB per seed) 1.8x as fast in chunks of
64 as of 256 (and 1.5x as fast as in chunks of 16, whose per-operation overhead is shared
by fewer seeds). Pass ``chunk_size`` to override."""


def _auto_chunk(per_seed_bytes, budget, cache_chunk=None):
    """The largest power of two <= AUTO_CHUNK_MAX (and <= ``cache_chunk`` if given) whose
    seeds fit ``budget`` (at least 1)."""
    fit = max(1, int(budget // max(per_seed_bytes, 1)))
    cap = AUTO_CHUNK_MAX if cache_chunk is None else min(AUTO_CHUNK_MAX, cache_chunk)
    return min(cap, 1 << (fit.bit_length() - 1))


def _state_bytes(network, setting, dtype):
    """Bytes of one seed's parameters and optimizer moments (what every step streams)."""
    n_params = sum(math.prod(w) + math.prod(b) for w, b in network.layer_shapes)
    moments = 2 if setting.optimizer == "adam" else 0
    return jnp.dtype(dtype).itemsize * n_params * (1 + moments)


def _cache_chunk(state_bytes, mesh):
    """On CPU devices: seeds per chunk whose state fits ``AUTO_CHUNK_CACHE_BYTES`` on each
    device (a power of two times the number of devices, at least one seed per device);
    None on accelerators (their memory streams fast enough that larger chunks pay)."""
    devices = list(mesh.devices.flat) if mesh is not None else [jax.devices()[0]]
    if any(d.platform != "cpu" for d in devices):
        return None
    fit = max(1, int(AUTO_CHUNK_CACHE_BYTES // max(state_bytes, 1)))
    return (1 << (fit.bit_length() - 1)) * len(devices)


@functools.partial(jax.jit, static_argnums=1)
def _broadcast_seeds(layers, size):
    """Shared (W, b) layers with a leading seed axis of ``size``, in one dispatch (one
    broadcast per array cost more host time than a short narrow run's steps)."""
    return [tuple(jnp.broadcast_to(a, (size,) + a.shape) for a in layer) for layer in layers]


def _is_out_of_memory(error) -> bool:
    text = f"{type(error).__name__}: {error}".lower()
    return "resource_exhausted" in text or "out of memory" in text


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
                   return_params, unroll, replay_masks=False, data_axes=(None, None),
                   record_every=1, stop_block=None, optimizer=None, set_lr=True):
    """The jitted program that trains one chunk of seeds (cached per static configuration).

    ``data_axes``: the vmap axis of x and y (0 = one data set per seed, None = shared).
    ``record_every``: steps per record unit. ``stop_block``: None for the plain scan,
    else the number of record units per block of the early-stopping loop.
    """
    network = _make_network(setting, in_dim, out_dim)
    statics = dict(network=network, setting=setting, layers=layers,
                   matrix_layers=matrix_layers, num_mats=num_mats,
                   return_params=return_params, unroll=unroll, record_every=record_every,
                   optimizer=optimizer)
    if stop_block is None:
        one = functools.partial(_train_one_seed, final_slot=final_slot, **statics)
        x_axis, y_axis = data_axes
        batched = jax.vmap(one, in_axes=(0, 0, 0, x_axis, y_axis, None, None, None,
                                         0 if set_lr else None, None))

        def run(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot, mat_times, lr,
                stop_loss, masks):
            return batched(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot, lr,
                           masks)
    else:
        run = functools.partial(_train_chunk_until_stopped, data_axes=data_axes,
                                block=stop_block, **statics)

    def program(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot, mat_times, lr,
                stop_loss, masks):
        global _TRACES
        _TRACES += 1
        if not set_lr:  # a given optimizer keeps its own hyperparameters
            lr = None
        return run(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot, mat_times, lr,
                   stop_loss, masks)

    # The chunk's initial parameters are fresh arrays made by train(); with return_params
    # their buffers can hold the final parameters (without, nothing could reuse them).
    return jax.jit(program, donate_argnums=0 if return_params else ())


class _Stepper(NamedTuple):
    """The pure functions that train ONE seed (see :func:`_seed_stepper`)."""

    carry0: Callable  # params -> the carry at step 0
    unit: Callable  # (carry, r) -> (carry, records of step r·k): one record unit
    matrices: Callable  # params -> (hidden, output) distance matrices of the tracked inputs
    records_of: Callable  # params -> the records of these parameters


def _seed_stepper(x, y, k_shuffle, k_dropout, pair_idx, tracked, slot, lr, masks, stop_loss, *,
                  network, setting, layers, matrix_layers, num_mats, record_every, guard,
                  unroll, optimizer=None):
    """The training of ONE seed as pure functions over its carry (a :class:`_Stepper`).

    carry = (params, opt_state, status, diverged_step, stop_step, mats, order). A record
    unit r runs steps t = r·k ... r·k + k − 1 (k = ``record_every``); its first step
    records before its update. ``order`` is the epoch's minibatch order (None for full
    batch), drawn at the first step of each epoch. With ``stop_loss`` (a traced scalar,
    or None for no early stopping) a seed whose recorded loss at record step t is below
    it stops there: ``stop_step = t`` and update t and all later ones are skipped, like
    the freeze on divergence. With ``guard`` (static), steps t >= ``setting.steps`` (the
    padding of the last record unit or block) change nothing. ``optimizer``: an optax
    ``GradientTransformation`` (default: the setting's named optimizer with an injected
    learning rate, :func:`named_optimizer`).
    """
    # The optimizer is static (part of the program); the learning rate is data: it lives
    # in the optimizer state (optax.inject_hyperparams), set per seed at step 0. lr None
    # leaves a given optimizer's own hyperparameters alone.
    if optimizer is None:
        optimizer = named_optimizer(setting.optimizer)

    steps = setting.steps
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

    def records_of(p):
        return records(*network.apply(p, x, train=False))

    def matrices(p):
        out, hid = network.apply(p, tracked, train=False)
        return (jnp.stack([q.pairwise_squared_distances(hid[k]) for k in matrix_layers]),
                q.pairwise_squared_distances(out))

    def draw_order(order, t):
        """The epoch's minibatch order: ``permutation(fold_in(k_shuffle, epoch), n)``,
        padded to whole minibatches, drawn once at the epoch's first step."""
        def draw(_):
            perm = jax.random.permutation(jax.random.fold_in(k_shuffle, t // batches_per_epoch),
                                          n).astype(jnp.int32)
            return jnp.concatenate(
                [perm, jnp.zeros(batches_per_epoch * batch_size - n, jnp.int32)])

        # t is the scan's (unbatched) step counter, so under vmap this stays a real
        # branch: the permutation (a sort of n keys) runs once per epoch, not per step.
        return lax.cond(t % batches_per_epoch == 0, draw, lambda o: o, order)

    def batch_of(order, t):
        """Indices and validity mask of step t's minibatch within its epoch's order."""
        b = t % batches_per_epoch
        idx = lax.dynamic_slice(order, (b * batch_size,), (batch_size,))
        valid = b * batch_size + jnp.arange(batch_size) < n
        return idx, valid

    def training_loss(p, t, order):
        if shared_forward:
            out, hid = network.apply(p, x, train=False)
            return loss_scale * q.half_mse(out, y), (out, hid, hid)
        if batch_size is None:
            xb, yb, scale = x, y, 1.0
            mask = None
        else:
            idx, mask = batch_of(order, t)
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

    def begin(carry, t):
        """The step's gradient, liveness and tracked matrices (before its update)."""
        params, opt_state, status, diverged_step, stop_step, mats, order = carry
        if batch_size is not None:
            order = draw_order(order, t)
        (train_loss, aux), grads = jax.value_and_grad(training_loss, has_aux=True)(
            params, t, order)
        live = (status == Status.OK) & (stop_step == steps)
        if guard:
            live = live & (t < steps)
        if num_mats:
            record_now = (slot[t] >= 0) & (t < steps) if guard else slot[t] >= 0
            mats = lax.cond(
                record_now,
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
        finite = jnp.isfinite(train_loss) & _all_finite(bias_grads) & _all_finite(aux[2])
        return (params, opt_state, status, diverged_step, stop_step, mats, order), grads, \
            aux, live, finite

    def end(carry, t, grads, live, finite):
        """Apply the update of a live seed whose step is finite; freeze one that failed."""
        params, opt_state, status, diverged_step, stop_step, mats, order = carry
        # A seed that was running and now fails freezes here; a frozen seed stays frozen.
        accept = live & finite
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        params = _select(accept, new_params, params)
        opt_state = _select(accept, new_opt_state, opt_state)
        newly = live & ~finite
        diverged_step = jnp.where(newly, t, diverged_step)
        status = jnp.where(newly, jnp.int32(Status.DIVERGED), status)
        return params, opt_state, status, diverged_step, stop_step, mats, order

    def record_step(carry, t):
        carry, grads, (out, hid, _), live, finite = begin(carry, t)
        params, opt_state, status, diverged_step, stop_step, mats, order = carry
        if not shared_forward:
            out, hid = network.apply(params, x, train=False)
        rec = records(out, hid)
        # The records themselves too: finite activations can still overflow a squared
        # distance (h, y, w), and a seed must never be OK with non-finite records.
        finite = finite & jnp.isfinite(rec["loss"]) & _all_finite([rec["h"], rec["y"], rec["w"]])
        if stop_loss is not None:
            # Reaching the target stops the seed before this update (and takes precedence:
            # a stopped seed makes no update, so none can diverge) — with finite records.
            reached = live & finite & (rec["loss"] < stop_loss)
            stop_step = jnp.where(reached, t, stop_step)
            live = live & ~reached
        carry = (params, opt_state, status, diverged_step, stop_step, mats, order)
        return end(carry, t, grads, live, finite), rec

    def plain_step(carry, t):
        carry, grads, _, live, finite = begin(carry, t)
        return end(carry, t, grads, live, finite), None

    def unit(carry, r):
        if record_every == 1:
            return record_step(carry, r)
        t0 = r * record_every
        carry, rec = record_step(carry, t0)
        carry, _ = lax.scan(plain_step, carry,
                            t0 + jnp.arange(1, record_every, dtype=jnp.int32), unroll=unroll)
        return carry, rec

    def carry0(params):
        if num_mats:
            n_t = tracked.shape[0]
            mats0 = (jnp.zeros((num_mats, len(matrix_layers), n_t, n_t), x.dtype),
                     jnp.zeros((num_mats, n_t, n_t), x.dtype))
        else:
            mats0 = None
        order0 = None if batch_size is None else \
            jnp.zeros(batches_per_epoch * batch_size, jnp.int32)
        last = jnp.int32(steps)
        opt_state = optimizer.init(params)
        if lr is not None:
            opt_state = _with_learning_rate(opt_state, lr)
        return (params, opt_state, jnp.int32(Status.OK), last, last, mats0, order0)

    return _Stepper(carry0=carry0, unit=unit, matrices=matrices, records_of=records_of)


def _train_one_seed(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot, lr, masks, *,
                    network, setting, layers, matrix_layers, num_mats, final_slot,
                    return_params, unroll, record_every, optimizer):
    """Train ONE seed for ``setting.steps`` steps from ``params`` in one ``lax.scan`` over
    its record units.

    Vmapped over the seeds (and per-seed data) by the caller.
    """
    steps = setting.steps
    num_records = math.ceil(steps / record_every)
    st = _seed_stepper(x, y, k_shuffle, k_dropout, pair_idx, tracked, slot, lr, masks, None,
                       network=network, setting=setting, layers=layers,
                       matrix_layers=matrix_layers, num_mats=num_mats,
                       record_every=record_every, guard=num_records * record_every != steps,
                       unroll=unroll, optimizer=optimizer)
    (params, _, status, diverged_step, _, mats, _), rec = lax.scan(
        st.unit, st.carry0(params), jnp.arange(num_records, dtype=jnp.int32),
        unroll=unroll if record_every == 1 else 1)

    result = dict(h=rec["h"], y=rec["y"], w=rec["w"], loss=rec["loss"], e0=rec["e0"][0],
                  status=status, diverged_step=diverged_step)
    if num_mats:
        if final_slot >= 0:
            mats = jax.tree.map(lambda buf, new: buf.at[final_slot].set(new), mats,
                                st.matrices(params))
        result["hidden_matrices"], result["output_matrices"] = mats
    if return_params:
        result["params"] = params
    return result


def _train_chunk_until_stopped(params, k_shuffle, k_dropout, x, y, pair_idx, tracked, slot,
                               mat_times, lr, stop_loss, masks, *, data_axes, network, setting,
                               layers, matrix_layers, num_mats, return_params, unroll,
                               record_every, block, optimizer):
    """Train a chunk of seeds with early stopping: blocks of ``block`` record units until
    all are done.

    Each block is a ``lax.scan`` of the one-seed record unit, vmapped over the seeds; a
    ``lax.while_loop`` over blocks ends once every seed has stopped, diverged or reached
    ``setting.steps``. (The loop runs over the vmapped block rather than vmapping a
    one-seed while loop: the batched loop would re-select the whole [T', ...] record
    buffers every block.) Records go into preallocated [T', ...] buffers; a seed frozen
    at step t (stop or divergence) then has every record of a step >= t, and every
    matrix of a step >= t, set to those of its frozen parameters, exactly as the plain
    scan records.
    """
    steps = setting.steps
    k = record_every
    num_records = math.ceil(steps / k)
    x_axis, y_axis = data_axes

    def stepper(xs, ys, ks, kd, lr_s):
        return _seed_stepper(xs, ys, ks, kd, pair_idx, tracked, slot, lr_s, masks, stop_loss,
                             network=network, setting=setting, layers=layers,
                             matrix_layers=matrix_layers, num_mats=num_mats, record_every=k,
                             guard=True, unroll=unroll, optimizer=optimizer)

    def start(p, xs, ys, ks, kd, lr_s):
        return stepper(xs, ys, ks, kd, lr_s).carry0(p)

    def run_block(carry, r0, xs, ys, ks, kd, lr_s):
        return lax.scan(stepper(xs, ys, ks, kd, lr_s).unit, carry,
                        r0 + jnp.arange(block, dtype=jnp.int32),
                        unroll=unroll if k == 1 else 1)

    def finish(carry, rec, units_run, xs, ys, ks, kd, lr_s):
        st = stepper(xs, ys, ks, kd, lr_s)
        params, _, status, diverged_step, stop_step, mats, _ = carry
        end = jnp.minimum(diverged_step, stop_step)
        # Records from the first record step >= end on are those of the frozen parameters.
        first_after = (end + (k - 1)) // k
        after = jnp.arange(num_records) >= first_after
        rec = {key: v[:num_records] for key, v in rec.items()}
        at = jnp.minimum(first_after, num_records - 1)
        frozen = {key: v[at] for key, v in rec.items()}
        if k > 1:
            # A seed that froze between records in the loop's last block may have its
            # next record in a block that never ran: take it from the frozen parameters.
            computed = first_after < units_run
            fresh = st.records_of(params)
            frozen = {key: jnp.where(computed, v, fresh[key]) for key, v in frozen.items()}
        rec = {key: jnp.where(after.reshape((-1,) + (1,) * (v.ndim - 1)), frozen[key], v)
               for key, v in rec.items()}
        result = dict(h=rec["h"], y=rec["y"], w=rec["w"], loss=rec["loss"], e0=rec["e0"][0],
                      status=status, diverged_step=diverged_step, stop_step=stop_step)
        if num_mats:
            new = st.matrices(params)
            late = mat_times >= end
            mats = jax.tree.map(
                lambda buf, frozen_mat: jnp.where(
                    late.reshape((-1,) + (1,) * (buf.ndim - 1)), frozen_mat, buf),
                mats, new)
            result["hidden_matrices"], result["output_matrices"] = mats
        if return_params:
            result["params"] = params
        return result

    data_in = (x_axis, y_axis, 0, 0, None if lr is None else 0)
    carry = jax.vmap(start, in_axes=(0,) + data_in)(params, x, y, k_shuffle, k_dropout, lr)
    # Record buffers [seeds, blocks·block, ...], from the shapes of one block's records.
    rec_shapes = jax.eval_shape(
        lambda c, xs, ys, ks, kd, lr_s: run_block(c, jnp.int32(0), xs, ys, ks, kd, lr_s)[1],
        jax.tree.map(lambda a: a[0], carry), _first(x, x_axis), _first(y, y_axis),
        k_shuffle[0], k_dropout[0], None if lr is None else lr[0])
    num_seeds = k_shuffle.shape[0]
    padded_records = math.ceil(num_records / block) * block
    bufs = {key: jnp.zeros((num_seeds, padded_records) + s.shape[1:], s.dtype)
            for key, s in rec_shapes.items()}
    batched_block = jax.vmap(run_block, in_axes=(0, None) + data_in)

    def running(carry):
        status, stop_step = carry[2], carry[4]
        return jnp.any((status == Status.OK) & (stop_step == steps))

    def cond(state):
        carry, _, r0 = state
        return (r0 < num_records) & running(carry)

    def body(state):
        carry, bufs, r0 = state
        carry, rec = batched_block(carry, r0, x, y, k_shuffle, k_dropout, lr)
        bufs = {key: lax.dynamic_update_slice_in_dim(bufs[key], rec[key], r0, axis=1)
                for key in bufs}
        return carry, bufs, r0 + block

    carry, bufs, units_run = lax.while_loop(cond, body, (carry, bufs, jnp.int32(0)))
    return jax.vmap(finish, in_axes=(0, 0, None) + data_in)(carry, bufs, units_run, x, y,
                                                            k_shuffle, k_dropout, lr)


def _first(a, axis):
    return a if axis is None else a[0]


def _make_network(setting, in_dim, out_dim):
    return setting.network(in_dim, out_dim)


def _all_finite(tree):
    leaves = jax.tree.leaves(tree)
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(a)) for a in leaves],
                            jnp.bool_(True))


def _select(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


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


# --------------------------------------------------------------------------- checks


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


def _check_data(setting, x, y, num_seeds):
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
    if setting.in_dim is not None and x.shape[-1] != setting.in_dim:
        raise ValueError(f"x must have setting.in_dim={setting.in_dim} columns; got {x.shape[-1]}.")
    if setting.out_dim is not None and y.shape[-1] != setting.out_dim:
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


def _check_masks(masks, setting, network, n):
    if masks is None:
        return None
    given = masks
    if setting.architecture != "dropout" or setting.batch_size is not None and \
            setting.batch_size < n:
        raise ValueError("dropout_masks need the 'dropout' architecture trained full batch.")
    shapes = [(setting.steps, n, w[0]) for w, _ in network.layer_shapes]
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
