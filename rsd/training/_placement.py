"""Where and how many seeds run at once: devices, mesh, sharding and the memory model.

``train`` shards each chunk's seed axis over a 1-D mesh (axis ``"seeds"``) and picks
the chunk size from a per-seed memory estimate (:func:`seed_footprint`) against a budget
(:func:`memory_budget`), capped on CPUs so the weights stay in cache; a chunk that runs
out of device memory anyway is halved and retried (:func:`run_chunks`). The same
parameter and state counts serve the sweeps' estimates.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import _is_index, _short_repr, parameter_template

__all__ = ["Placement", "use_devices", "resolve_devices", "parameter_count", "state_bytes", "seed_footprint"]


@dataclasses.dataclass(frozen=True)
class Placement:
    """How :func:`train` lays out and runs the seeds (an alternative to its loose keywords
    of the same names, which it documents): ``devices`` (None, ``"all"``, an int n or a
    sequence of devices: the seed axis is sharded over them), ``chunk_size`` (seeds per
    compiled chunk; None: chosen from the memory model), ``memory_budget`` (bytes for one
    chunk; None: from the environment or the devices), ``progress`` (a tqdm bar over
    chunks; None: when there is more than one) and ``unroll`` (``lax.scan`` unroll factor).
    Checked by ``train``."""

    devices: Any = None
    chunk_size: int | None = None
    memory_budget: int | None = None
    progress: bool | None = None
    unroll: int = 1


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


def resolve_devices(devices) -> tuple | None:
    """The local devices that ``devices`` names, as :func:`train` reads its argument:
    None gives None (the default device, or the ones :func:`use_devices` chose),
    ``"all"`` every local device, an int n the first n, a sequence those devices (each
    a local device of this process). ``ValueError`` naming the allowed values otherwise."""
    mesh = _mesh(devices)
    return None if mesh is None else tuple(mesh.devices.flat)


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
                len(set(chosen)) != len(chosen) or any(d not in local for d in chosen):
            raise ValueError("devices must be None, 'all', a number of local devices or a "
                             "sequence of distinct jax devices local to this process; got "
                             f"{_short_repr(devices)}.")
    return jax.sharding.Mesh(np.asarray(chosen), ("seeds",))


def _shard(tree, mesh):
    """Place every leaf's leading (seed) axis across the mesh."""
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))
    return jax.device_put(tree, spec)


def _replicate(tree, mesh):
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


AUTO_CHUNK_MAX = 64
"""The largest chunk ``train`` chooses by itself (more seeds per program stop paying on a
CPU; pass ``chunk_size`` for larger chunks on an accelerator)."""



def parameter_count(network) -> int:
    """Number of trainable parameters of ``network`` (array elements of ``init``'s pytree;
    shapes traced, nothing run)."""
    return int(sum(math.prod(a.shape) for a in jax.tree.leaves(parameter_template(network))))


def optimizer_moments(optimizer: str) -> int:
    """Parameter-sized moments the named optimizer keeps (Adam 2, SGD 0)."""
    return 2 if optimizer == "adam" else 0


def state_bytes(network, optimizer: str = "sgd", dtype=None) -> int:
    """Bytes of one seed's parameters and optimizer moments (what every step streams):
    itemsize · parameters · (1 + moments), ``optimizer`` a ``Setting.optimizer`` name,
    ``dtype`` default the working float (float32, float64 under jax_enable_x64)."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    return jnp.dtype(dtype).itemsize * parameter_count(network) * (1 + optimizer_moments(optimizer))


def _hidden_floats(network) -> int:
    """Hidden activation floats per data point: rsd's layered networks count the fan-out
    of every module but the last (times the length for the CNN's channels); any other
    network the features of its hidden records."""
    layer_shapes = getattr(network, "layer_shapes", None)
    if layer_shapes is None:
        x = jax.ShapeDtypeStruct((1, network.in_dim), jnp.result_type(float))
        _, hid = jax.eval_shape(lambda p, x: network.apply(p, x), parameter_template(network), x)
        return max(sum(int(h.shape[-1]) for h in hid), 1)
    hidden = max(sum(math.prod(w[1:]) for w, _ in layer_shapes[:-1]), 1)
    return hidden * (network.width if getattr(network, "architecture", None) == "cnn" else 1)


def seed_footprint(network, optimizer: str = "sgd", *, n: int, num_records: int,
                   num_layers: int, num_matrices: int = 0, num_matrix_layers: int = 0,
                   num_tracked: int = 0, num_checkpoints: int = 0, data_per_seed: int = 0,
                   dtype=None) -> int:
    """Estimated bytes one seed needs in a chunk of :func:`train`: parameters four times
    (the parameters, their gradient, the update and the new parameters) plus the
    optimizer's moments and ``num_checkpoints`` saved copies, every hidden activation on
    the ``n`` data points three times (forward values, pre-activations, backward signals),
    ``num_records`` records of ``num_layers`` h values and four scalars, the distance
    matrices of ``num_tracked`` inputs (``num_matrices`` steps × (``num_matrix_layers``
    + 1)), and ``data_per_seed`` floats of per-seed data."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    itemsize = jnp.dtype(dtype).itemsize
    n_params = parameter_count(network)
    copies = 4 + optimizer_moments(optimizer) + num_checkpoints
    activations = 3 * n * _hidden_floats(network)
    records = num_records * (num_layers + 4)
    mats = num_matrices * (num_matrix_layers + 1) * num_tracked ** 2 if num_matrices else 0
    return itemsize * (n_params * copies + activations + records + mats + data_per_seed)


def _memory_budget(budget=None, mesh=None) -> int:
    """Bytes available to one chunk: ``budget`` if given, else the env var
    ``RSD_MEMORY_BUDGET``, else half of the devices' free memory
    (``Device.memory_stats``), or on a CPU half of the host's available memory."""
    if budget is not None:
        return int(budget)
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



def _cache_chunk(state_bytes, mesh):
    """On CPU devices: seeds per chunk whose state fits ``AUTO_CHUNK_CACHE_BYTES`` on each
    device (a power of two times the number of devices, at least one seed per device);
    None on accelerators (their memory streams fast enough that larger chunks pay)."""
    devices = list(mesh.devices.flat) if mesh is not None else [jax.devices()[0]]
    if any(d.platform != "cpu" for d in devices):
        return None
    fit = max(1, int(AUTO_CHUNK_CACHE_BYTES // max(state_bytes, 1)))
    return (1 << (fit.bit_length() - 1)) * len(devices)



def _is_out_of_memory(error) -> bool:
    text = f"{type(error).__name__}: {error}".lower()
    return "resource_exhausted" in text or "out of memory" in text



def run_chunks(run_chunk, num_seeds: int, chunk: int, num_devices: int, bar=None):
    """``run_chunk(idx)`` over the seeds in chunks of ``chunk`` (the last one padded by
    repeating its last seed, whose duplicates' results are dropped), each result's leaves
    with a leading seed axis, concatenated. A chunk that runs out of device memory is
    halved (to a multiple of ``num_devices``, at least ``num_devices``) and retried."""
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
                          f"{chunk} seeds per chunk.", RuntimeWarning, stacklevel=4)
            continue
        real = min(chunk, num_seeds - start)
        outputs.append(out if real == chunk else jax.tree.map(lambda a: a[:real], out))
        start += real
        if bar is not None:
            bar.update(real)
    return outputs[0] if len(outputs) == 1 else \
        jax.tree.map(lambda *a: jnp.concatenate(a), *outputs)
