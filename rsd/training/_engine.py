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

The parts: ``_run`` (``Run``, ``Status``), ``_checks`` (host-side argument checks),
``_state`` (``TrainState`` and the one ``init``/``step`` pair), ``_recorders`` (pair
records, distance matrices, parameter checkpoints), ``_schedules`` (the scan and the
early-stopping loop), ``_placement`` (devices, memory model, chunking); this module holds
``train`` and the cache of compiled chunk programs.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import quantities as q
from .._validation import check_finite, check_int_range
from ._checks import (
    _as_float_array,
    _check_checkpoint_steps,
    _check_data,
    _check_layers,
    _check_masks,
    _check_matrix_steps,
    _check_pair,
    _check_seeds,
    _check_stop_loss,
    _per_seed,
    _short_repr,
    _split_init,
    _typed_key,
    parameter_template,
)
from ._placement import (
    _DEFAULT_DEVICES,
    Placement,
    _auto_chunk,
    _cache_chunk,
    _memory_budget,
    _mesh,
    _replicate,
    _shard,
    run_chunks,
    seed_footprint,
    state_bytes,
)
from ._recorders import PairRecorder, Recording, distance_matrices, parameter_checkpoints
from ._run import Run
from ._schedules import scan_schedule, stop_schedule
from ._settings import Setting
from ._state import TrainData, _has_injected_lr, init_state, step_config

__all__ = ["train"]

# Number of times the per-chunk program has been traced (tests check that a second
# call with the same shapes reuses the compiled program).
_TRACES = 0
# Steps per block of the early-stopping loop (rounded to whole record units, at least
# one): a chunk runs at most this many steps past the step where its last seed stopped
# or diverged; each block costs one loop iteration.
_STOP_BLOCK = 128


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
    network=None,
    checkpoint_steps=None,
    recording: Recording | None = None,
    placement: Placement | None = None,
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

        network: None (build ``setting.network(in_dim, out_dim)`` from the setting's
            architecture fields), or any network of rsd's interface
            (:class:`rsd.networks.AbstractNetwork`: ``init(key)``, ``apply(params, x, *,
            train, key, masks) -> (output, hiddens)``, ``num_hidden``, ``in_dim``,
            ``out_dim``, ``has_dropout``), hashable (a static argument of the compiled
            program), trained instead; the setting then gives only the optimizer, lr,
            steps, batch size and loss. ``x``/``y`` must have its ``in_dim``/``out_dim``
            columns; ``init_params`` goes through its ``from_layers``; ``gain`` must be
            None (``Run.gain`` is NaN: the network initializes itself).
        checkpoint_steps: None, or strictly increasing steps t_1 < ... < t_K in [0, T]:
            ``Run.checkpoints`` holds each seed's parameters after t_k steps (t = 0: the
            initial ones), leading axes [S, K]; a seed frozen at t (stop or divergence)
            has its frozen parameters at every t_k >= t.
        recording: None, or a :class:`Recording` giving ``pair``, ``layers``,
            ``record_every``, ``tracked``, ``matrix_steps``, ``matrix_layers``,
            ``checkpoint_steps`` and ``return_params`` in one record (each then must be
            left at its default here).
        placement: None, or a :class:`Placement` giving ``devices``, ``chunk_size``,
            ``memory_budget``, ``progress`` and ``unroll`` in one record (likewise).

    Determinism: the same call (same seeds, data, ``chunk_size``, ``unroll``, batching)
    gives bitwise identical results on the same machine and software. Results of one
    seed across different ``chunk_size``, seed batchings or ``unroll`` agree to float32
    round-off, not necessarily bitwise (XLA may order the sums of differently batched
    programs differently; chaotic trajectories amplify such differences over long runs).
    """
    rec = _merge_options("recording", recording, Recording, dict(
        pair=pair, layers=layers, record_every=record_every, tracked=tracked,
        matrix_steps=matrix_steps, matrix_layers=matrix_layers,
        checkpoint_steps=checkpoint_steps, return_params=return_params))
    place = _merge_options("placement", placement, Placement, dict(
        devices=devices, chunk_size=chunk_size, memory_budget=memory_budget,
        progress=progress, unroll=unroll))
    return _train(setting, x, y, seeds=seeds, init_params=init_params, root_key=root_key,
                  dropout_masks=dropout_masks, stop_loss=stop_loss, lr=lr, gain=gain,
                  optimizer=optimizer, network=network, **rec, **place)


def _merge_options(name, record, cls, loose):
    """The loose keywords, or the fields of the option record ``record`` (each keyword
    then at its default)."""
    if record is None:
        return loose
    if not isinstance(record, cls):
        raise ValueError(f"{name} must be None or an rsd.training.{cls.__name__}; got "
                         f"{_short_repr(record)}.")
    for field in dataclasses.fields(cls):
        given = loose[field.name]
        if not (given is field.default or isinstance(given, (tuple, int)) and
                type(given) is type(field.default) and given == field.default):
            raise ValueError(f"{field.name} was given both as a keyword and in {name}=; "
                             "give it once.")
        loose[field.name] = getattr(record, field.name)
    return loose


def _train(setting, x, y, *, seeds, init_params, pair, layers, tracked, matrix_steps,
           matrix_layers, chunk_size, root_key, return_params, progress, unroll,
           dropout_masks, stop_loss, record_every, lr, gain, devices, optimizer,
           memory_budget, network, checkpoint_steps):
    if not isinstance(setting, Setting):
        raise ValueError(f"setting must be an rsd.training.Setting; got {type(setting).__name__}.")
    if network is not None:
        _check_network(network)
    # float32 unless float64 is switched on (jax_enable_x64), then float64 throughout.
    dtype = jnp.result_type(float)
    seeds_host = _check_seeds(seeds)
    num_seeds = len(seeds_host)
    x = _as_float_array("x", x, dtype)
    y = _as_float_array("y", y, dtype)
    x_per_seed, y_per_seed = _check_data(setting, x, y, num_seeds, network)
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
    if network is not None and gain is not None:
        raise ValueError("gain must be None with a given network (it initializes itself); "
                         f"got {_short_repr(gain)}.")
    gain_host = _per_seed("gain", setting.gain if gain is None else gain, num_seeds,
                          positive=True)
    mesh = _mesh(_DEFAULT_DEVICES.get() if devices is None else devices)
    num_devices = 1 if mesh is None else mesh.size

    # The compiled programs depend on the setting's structure only (Setting.structure:
    # lr and gain are per-seed data, the gain acting through the initialization alone);
    # a minibatch as large as the data is the full batch. The initialization depends on
    # the network alone.
    batch_size = setting.batch_size if setting.batch_size is not None and setting.batch_size < n \
        else None
    structure = setting.structure().replace(batch_size=batch_size)
    given_network = network is not None
    if not given_network:
        network = structure.network(in_dim, out_dim)
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
    ck_steps = _check_checkpoint_steps(checkpoint_steps, steps)

    masks = _check_masks(dropout_masks, setting, network, n)

    if root_key is None:
        root_key = jax.random.key(0)
    root_key = _typed_key(root_key)

    per_seed_init, shared_init = _split_init(init_params, num_seeds, network)
    if optimizer is not None and lr is not None and not _has_injected_lr(
            optimizer, parameter_template(network)):
        raise ValueError("lr needs an optimizer with an injected learning rate "
                         "(optax.inject_hyperparams(...)(learning_rate=...)); the given "
                         "optimizer has none: pass lr=None to use its own.")
    mat_slot, mat_final = _slots(mat_steps, steps)
    ck_slot, ck_final = _slots(ck_steps, steps)
    num_mats = 0 if mat_steps is None else len(mat_steps)
    num_cks = 0 if ck_steps is None else len(ck_steps)

    # Seed counts share programs in power-of-two buckets (1, 2, 4, ...) up to the chunk
    # size: the given one, or the largest power of two whose footprint fits the memory.
    per_seed_bytes = seed_footprint(
        network, setting.optimizer, n=n, num_records=num_records, num_layers=len(layers),
        num_matrices=num_mats, num_matrix_layers=0 if not num_mats else len(matrix_layers),
        num_tracked=0 if tracked is None else tracked.shape[0], num_checkpoints=num_cks,
        data_per_seed=(x.shape[-2] * x.shape[-1] if x_per_seed else 0)
        + (y.shape[-2] * y.shape[-1] if y_per_seed else 0), dtype=dtype)
    if chunk_size is None:
        budget = _memory_budget(memory_budget, mesh)
        chunk_size = _auto_chunk(per_seed_bytes, budget,
                                 _cache_chunk(state_bytes(network, setting.optimizer, dtype),
                                              mesh))
    chunk = min(chunk_size, 1 << (num_seeds - 1).bit_length())
    chunk = -(-chunk // num_devices) * num_devices

    program = _chunk_program(
        network=network, setting=structure, layers=layers, matrix_layers=matrix_layers,
        num_mats=num_mats, mat_final=mat_final, num_checkpoints=num_cks, checkpoint_final=ck_final,
        return_params=return_params, unroll=unroll, replay_masks=masks is not None,
        data_axes=(0 if x_per_seed else None, 0 if y_per_seed else None),
        record_every=record_every,
        stop_block=None if stop_loss is None else
        min(num_records, max(1, _STOP_BLOCK // record_every)),
        optimizer=optimizer, set_lr=set_lr,
    )
    stop_arg = None if stop_loss is None else jnp.asarray(stop_loss, dtype)
    shared = dict(pair=jnp.asarray([i, j], jnp.int32), masks=masks, tracked=tracked,
                  mat_slot=mat_slot, mat_times=_times(mat_steps), ck_slot=ck_slot,
                  ck_times=_times(ck_steps))

    show = progress if progress is not None else num_seeds > chunk
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_seeds, desc=f"train {setting.name or setting.architecture}",
                   unit="seed")

    from_layers = getattr(network, "from_layers", lambda layers: layers)
    init_structure = setting.structure().replace(batch_size=None, steps=1, optimizer="sgd",
                                                 loss="half_mse")
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
            params = from_layers(jax.tree.map(lambda a: jnp.asarray(a[idx], dtype),
                                              per_seed_init))
        elif shared_init is not None:
            # Without return_params the program does not donate its parameters, so every
            # chunk can start from one broadcast copy (a fresh one per chunk costs a
            # chunk-sized allocation, page faults included: ~7 ms per chunk of the default
            # MLP with one seed per chunk).
            if return_params:
                params = from_layers(_broadcast_seeds(shared_init, size))
            else:
                if size not in shared_chunk:
                    shared_chunk[size] = from_layers(_broadcast_seeds(shared_init, size))
                params = shared_chunk[size]
        elif given_network:
            params = _stack([_network_init(network)(k) for k in keys[:, 0]])
        else:
            params = _stack([
                _init_program(in_dim, out_dim, init_structure.replace(gain=float(g)))(k)
                for k, g in zip(keys[:, 0], gain_host[idx])])
        params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
        k_order, k_dropout = keys[:, 1], keys[:, 2]
        xc = x[idx] if x_per_seed else x
        yc = y[idx] if y_per_seed else y
        lrc = jnp.asarray(lr_host[idx], dtype)
        if mesh is not None:
            params, k_order, k_dropout, lrc = _shard((params, k_order, k_dropout, lrc), mesh)
            xc, yc = (_shard(a, mesh) if per else _replicate(a, mesh)
                      for a, per in ((xc, x_per_seed), (yc, y_per_seed)))
        out = program(params, k_order, k_dropout, xc, yc, lrc, stop_arg, shared)
        # Errors of an asynchronous run (running out of memory) surface here.
        return jax.block_until_ready(out)

    out = run_chunks(run_chunk, num_seeds, chunk, num_devices, bar)
    if bar is not None:
        bar.close()

    if x_per_seed or y_per_seed:
        xs = x if x_per_seed else jnp.broadcast_to(x, (num_seeds,) + x.shape)
        ys = y if y_per_seed else jnp.broadcast_to(y, (num_seeds,) + y.shape)
        dx2, dy2 = q.squared_distance(xs[:, i], xs[:, j]), q.squared_distance(ys[:, i], ys[:, j])
    else:
        dx2, dy2 = q.squared_distance(x[i], x[j]), q.squared_distance(y[i], y[j])
    matrices = out.get("matrices")
    return Run(
        h=out["h"], y=out["y"], w=out["w"], loss=out["loss"],
        record_steps=jnp.arange(num_records, dtype=jnp.int32) * record_every, e0=out["e0"],
        status=out["status"], diverged_step=out["diverged_step"], stop_step=out["stop_step"],
        seeds=jnp.asarray(seeds_host),
        lr=jnp.asarray(lr_host if set_lr else np.full(num_seeds, np.nan), dtype),
        gain=jnp.asarray(np.full(num_seeds, np.nan) if given_network else gain_host, dtype),
        dx2=dx2, dy2=dy2,
        hidden_matrices=None if matrices is None else matrices[0],
        output_matrices=None if matrices is None else matrices[1],
        matrix_steps=_times(mat_steps), params=out.get("params"), layers=layers,
        matrix_layers=matrix_layers, pair=(i, j), setting=setting,
        checkpoints=out.get("checkpoints"), checkpoint_steps=_times(ck_steps),
    )


def _check_network(network):
    missing = [m for m in ("init", "apply", "num_hidden", "in_dim", "out_dim")
               if not hasattr(network, m)]
    if missing:
        raise ValueError("network must follow rsd's network interface (init, apply, num_hidden, "
                         f"in_dim, out_dim); {_short_repr(network)} lacks {', '.join(missing)}.")
    try:
        hash(network)
    except TypeError:
        raise ValueError("network must be hashable (an equinox Module or Flax module dataclass: "
                         "it is a static argument of the compiled program); got "
                         f"{_short_repr(network)}.") from None


def _slots(chosen, steps):
    """([steps] int32 slot of each step before T (−1: none), whether T itself is chosen)."""
    if chosen is None:
        return None, False
    slot = np.full(steps, -1, np.int32)
    for k, t in enumerate(chosen):
        if t < steps:
            slot[t] = k
    return jnp.asarray(slot), chosen[-1] == steps


def _times(chosen):
    return None if chosen is None else jnp.asarray(chosen, jnp.int32)


@functools.partial(jax.jit, static_argnums=1)
def _broadcast_seeds(layers, size):
    """Shared initial layers with a leading seed axis of ``size``, in one dispatch (one
    broadcast per array cost more host time than a short narrow run's steps)."""
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (size,) + a.shape), layers)


@jax.jit
def _seed_keys(root_key, seeds):
    """[n, 3] keys: fold_in(root_key, seed) split into each seed's (init, minibatch order, dropout) keys."""
    return jax.vmap(lambda s: jax.random.split(jax.random.fold_in(root_key, s), 3))(seeds)


@functools.lru_cache(maxsize=64)
def _init_program(in_dim, out_dim, setting):
    """jit(network.init) for one key, compiled once per network shape."""
    return jax.jit(setting.network(in_dim, out_dim).init)


@functools.lru_cache(maxsize=64)
def _network_init(network):
    """jit(network.init) of a given network, compiled once per network."""
    return jax.jit(network.init)


def _stack(trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


@functools.lru_cache(maxsize=64)
def _chunk_program(*, network, setting, layers, matrix_layers, num_mats, mat_final,
                   num_checkpoints, checkpoint_final, return_params, unroll, replay_masks=False,
                   data_axes=(None, None), record_every=1, stop_block=None, optimizer=None,
                   set_lr=True):
    """The jitted program that trains one chunk of seeds (cached per static configuration).

    ``program(params, k_order, k_dropout, x, y, lr, stop_loss, shared)``, every argument
    but ``shared`` with a leading seed axis (x, y: along ``data_axes``, 0 = one data set
    per seed, None = shared); ``shared`` holds the pair, replayed masks, tracked inputs
    and the snapshot slots and times. ``record_every``: steps per record unit.
    ``stop_block``: None for the plain scan, else the number of record units per block
    of the early-stopping loop.
    """
    steps = setting.steps
    num_records = math.ceil(steps / record_every)
    guard = stop_block is not None or num_records * record_every != steps
    config = step_config(setting, network, optimizer, guard=guard)
    pair = PairRecorder(layers)
    x_axis, y_axis = data_axes

    def snapshots_of(shared):
        snapshots = {}
        if num_mats:
            snapshots["matrices"] = distance_matrices(
                network, shared["tracked"], matrix_layers, shared["mat_slot"],
                shared["mat_times"], num_mats, mat_final)
        if num_checkpoints:
            snapshots["checkpoints"] = parameter_checkpoints(
                shared["ck_slot"], shared["ck_times"], num_checkpoints, checkpoint_final)
        return snapshots

    def one_seed(params, k_order, k_dropout, x, y, lr, shared):
        data = TrainData(x, y, shared["masks"])
        state = init_state(config, data, params, k_order, k_dropout, lr)
        return scan_schedule(config, data, state, pair, snapshots_of(shared),
                             pair_idx=shared["pair"], record_every=record_every, unroll=unroll)

    def program(params, k_order, k_dropout, x, y, lr, stop_loss, shared):
        global _TRACES
        _TRACES += 1
        if not set_lr:  # a given optimizer keeps its own hyperparameters
            lr = None
        lr_axis = None if lr is None else 0
        if stop_block is None:
            out = jax.vmap(one_seed, in_axes=(0, 0, 0, x_axis, y_axis, lr_axis, None))(
                params, k_order, k_dropout, x, y, lr, shared)
        else:
            out = stop_schedule(config, params, k_order, k_dropout, x, y, lr, stop_loss,
                                shared["masks"], pair, snapshots_of(shared),
                                pair_idx=shared["pair"], data_axes=data_axes,
                                record_every=record_every, block=stop_block, unroll=unroll)
        if not return_params:
            del out["params"]
        return out

    # The chunk's initial parameters are fresh arrays made by train(); with return_params
    # their buffers can hold the final parameters (without, nothing could reuse them).
    return jax.jit(program, donate_argnums=0 if return_params else ())
