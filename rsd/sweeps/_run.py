"""Running a sweep: every chunk of the plan trained, fitted and stored, resumably.

A chunk is one call of :func:`rsd.training.train` on the chunk's group structure with
per-element data: the two points of each element's (dx2, dy2), its learning rate, gain
and seed; then one batched fit of (η_h, η_y) per element. Its rows go to one Parquet
part (see :mod:`rsd.sweeps._store`). Several processes (``jax.distributed``) split the
chunks round-robin: process I of N takes chunk c when c % N == I.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import _store
from ._plan import Plan, group_layers, make_plan
from ._spec import SweepSpec, load_spec
from ..fitting import FitStatus

__all__ = ["SweepReport", "run_sweep", "run_chunk", "init_distributed", "FIT_SKIPPED", "result_schema"]

FIT_SKIPPED = FitStatus.SKIPPED
"""``fit_status`` of every row of a sweep whose spec says ``[fit] rates = false``."""
_METRICS = ("eta_h", "eta_y", "fit_loss", "r2_h", "r2_y", "r2_w", "final_h", "final_loss")


@dataclasses.dataclass(frozen=True)
class SweepReport:
    """What one process did: chunks of the plan, of this process, run now, found finished."""

    out: Path
    chunks: int
    mine: int
    ran: int
    skipped: int
    seconds: float

    def __str__(self):
        share = "" if self.mine == self.chunks else f" ({self.mine} of this process)"
        return (f"sweep {self.out}: {self.chunks} chunks{share}: {self.ran} run in "
                f"{self.seconds:.1f} s, {self.skipped} already finished; results in "
                f"{self.out / _store.RESULTS}/")


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> tuple[int, int]:
    """Join a multi-process run through ``jax.distributed.initialize`` and return
    (number of processes, this process's id).

    With all three None, JAX detects the cluster itself (SLURM, Open MPI, Cloud TPU,
    Kubernetes; or ``JAX_COORDINATOR_ADDRESS`` with the cluster's process numbering).
    Otherwise give all three: ``coordinator`` "HOST:PORT" of process 0, ``num_processes``
    >= 2 and ``process_id`` in [0, num_processes). On CPU the processes talk through
    gloo. Must run before any JAX computation in the process.
    """
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("coordinator, num_processes and process_id must be given together "
                         f"(got coordinator={coordinator!r}, num_processes={num_processes!r}, "
                         f"process_id={process_id!r}).")
    if all(given):
        if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 2:
            raise ValueError(f"num_processes must be an integer >= 2; got {num_processes!r}.")
        if isinstance(process_id, bool) or not isinstance(process_id, int) \
                or not 0 <= process_id < num_processes:
            raise ValueError(f"process_id must be an integer in [0, {num_processes}); got {process_id!r}.")
        host, sep, port = str(coordinator).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator must be HOST:PORT (port 1 … 65535); got {coordinator!r}.")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return jax.process_count(), jax.process_index()


def run_sweep(spec, out, *, force: bool = False, devices=None, progress: bool | None = None
              ) -> SweepReport:
    """Train, fit and store every (cell, seed) of ``spec`` under ``out``, resuming.

    Args:
        spec: a :class:`SweepSpec` or the path of a TOML spec.
        out: the sweep's folder (created). If it holds the same sweep (same spec hash),
            finished chunks are skipped; a different sweep raises ValueError unless
            ``force``, which deletes the sweep's files (manifest.json, results.parquet/,
            trajectories.zarr/, nothing else) and starts over.
        devices: None (every local device) or an int n (the first n local devices) or a
            list of local devices; each chunk's elements are sharded over them.
        progress: a tqdm bar over this process's chunks (default: when on a terminal).

    Several processes: call ``jax.distributed.initialize`` (or :func:`init_distributed`)
    first; process I of N then runs chunks c with c % N == I, each writing its own parts.

    Returns a :class:`SweepReport`. Rows: see :func:`result_schema`; read them with
    :func:`rsd.sweeps.read_results`.
    """
    if isinstance(spec, (str, Path)):
        spec = load_spec(spec)
    if not isinstance(spec, SweepSpec):
        raise ValueError(f"spec must be an rsd.sweeps.SweepSpec or a path; got {type(spec).__name__}.")
    if not isinstance(force, bool):
        raise ValueError(f"force must be True or False; got {force!r}.")
    plan = make_plan(spec)
    devices = _check_devices(devices)
    out = _check_out(out)
    num_processes, process_id = jax.process_count(), jax.process_index()
    # Every process checks the folder (read-only) before the leader changes anything, so a
    # refused folder is refused by all of them alike; the others start once it is ready.
    _store.check_existing(out, spec.spec_hash, force=force)
    _barrier(num_processes, "rsd.sweeps: folder checked")
    if process_id == 0:
        _store.prepare(out, plan, force=force, versions=_versions(), dtype=jnp.result_type(float))
    _barrier(num_processes, "rsd.sweeps: folder prepared")

    mine = [c for c in plan.chunks if c.index % num_processes == process_id]
    done = set(_store.finished_chunks(out))
    todo = [c for c in mine if c.index not in done]
    show = progress if progress is not None else _on_terminal()
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="chunk",
                   desc=f"sweep {spec.table}/{spec.row}")
    start = time.perf_counter()
    try:
        for chunk in todo:
            rows, series = run_chunk(plan, chunk.index, devices=devices)
            if spec.trajectories:
                _store.write_trajectories(out, chunk.elements, series)
            _store.write_part(out, chunk.index, rows)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return SweepReport(out=out, chunks=len(plan.chunks), mine=len(mine), ran=len(todo),
                       skipped=len(mine) - len(todo), seconds=time.perf_counter() - start)


def run_chunk(plan: Plan, index: int, *, devices=None):
    """Train and fit chunk ``index`` of ``plan``: (its rows as a ``pyarrow.Table``,
    its series {"h" [E, T, K], "y", "w", "loss" [E, T]} as numpy arrays)."""
    import pyarrow as pa

    from ..data import two_points
    from ..fitting import fit_rates_masked
    from ..training import Status

    if not isinstance(plan, Plan):
        raise ValueError(f"plan must be an rsd.sweeps.Plan (make_plan); got {type(plan).__name__}.")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
            or not 0 <= index < len(plan.chunks):
        raise ValueError(f"index must be a chunk id in [0, {len(plan.chunks)}); got {index!r}.")
    chunk = plan.chunks[int(index)]
    group = plan.groups[chunk.group]
    structure = group.structure
    layers = group_layers(plan, group)
    ids = np.asarray(chunk.elements, np.int64)
    cell_ids, seed_idx = np.divmod(ids, plan.num_seeds)
    seeds = np.asarray(plan.spec.seeds, np.int64)[seed_idx]
    settings = [plan.cells[c].setting for c in cell_ids]
    lr = np.array([s.lr for s in settings])
    gain = np.array([s.gain for s in settings])
    dx2 = np.array([s.dx2 for s in settings])
    dy2 = np.array([s.dy2 for s in settings])

    points = {}
    for pair in set(zip(dx2.tolist(), dy2.tolist())):
        points[pair] = two_points(*pair, in_dim=structure.in_dim, out_dim=structure.out_dim)
    x = jnp.stack([points[p][0] for p in zip(dx2.tolist(), dy2.tolist())])
    y = jnp.stack([points[p][1] for p in zip(dx2.tolist(), dy2.tolist())])
    series, status = _train(structure, x, y, seeds, lr, gain, layers, plan.spec.chunk_size, devices)

    e = ids.size
    if plan.spec.fit_rates:
        # Padded to the group's largest chunk (pads masked as untrained): one fit program
        # per group, whatever the size of its last chunk.
        pad = max(len(plan.chunks[c].elements) for c in group.chunks) - e
        take = np.concatenate([np.arange(e), np.full(pad, e - 1)]).astype(int)
        trained = np.concatenate([status == Status.OK, np.zeros(pad, bool)])
        fit = fit_rates_masked(series["h"][take, :, 0], series["y"][take], series["w"][take],
                               dx2[take], dy2[take], trained)
        eta_h, eta_y, fit_loss, r2, fit_status = (np.asarray(a)[:e] for a in fit)
    else:
        eta_h = eta_y = fit_loss = np.full(e, np.nan)
        r2 = np.full((e, 3), np.nan)
        fit_status = np.full(e, FIT_SKIPPED)

    schema = result_schema(plan)
    columns = {}
    for field in plan.spec.grid_fields:
        columns[field] = [_column_value(getattr(s, field)) for s in settings]
    columns.update(
        element=ids, cell=cell_ids, seed=seeds,
        eta_h=eta_h, eta_y=eta_y, fit_loss=fit_loss,
        r2_h=r2[:, 0], r2_y=r2[:, 1], r2_w=r2[:, 2],
        final_h=series["h"][:, -1, 0], final_loss=series["loss"][:, -1],
        train_status=status, fit_status=fit_status,
    )
    arrays = [pa.array(np.asarray(columns[f.name]) if f.name not in plan.spec.grid_fields
                       else columns[f.name], type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema), series


def result_schema(plan: Plan):
    """The columns of ``results.parquet``: the grid's fields (named as in the spec; a key
    "a+b" gives columns a and b), then

    * ``element`` (cell · len(seeds) + seed index), ``cell`` (grid product index), ``seed``;
    * ``eta_h``, ``eta_y``, ``fit_loss``, ``r2_h``, ``r2_y``, ``r2_w``: the fit of the
      theory to (h at the first recorded layer, y, w); NaN where not fitted;
    * ``final_h`` (last record of h at the first recorded layer), ``final_loss``;
    * ``train_status`` (:class:`rsd.training.Status`), ``fit_status``
      (:class:`rsd.fitting.FitStatus`, one enumeration for every row: ``NOT_FITTED`` = −1
      for an element whose training diverged, ``SKIPPED`` = −2 when the spec says
      ``[fit] rates = false``).
    """
    import pyarrow as pa

    fields = []
    for key, values in plan.spec.grid:
        names = key.split("+")
        for k, name in enumerate(names):
            column = values if len(names) == 1 else [v[k] for v in values]
            fields.append(pa.field(name, _arrow_type(column)))
    fields += [pa.field("element", pa.int64()), pa.field("cell", pa.int64()),
               pa.field("seed", pa.int64())]
    fields += [pa.field(name, pa.float64()) for name in _METRICS]
    fields += [pa.field("train_status", pa.int32()), pa.field("fit_status", pa.int32())]
    return pa.schema(fields)


def _arrow_type(values):
    import pyarrow as pa

    sample = values[0]
    if isinstance(sample, bool):
        return pa.bool_()
    if isinstance(sample, int):
        return pa.int64()
    if isinstance(sample, float):
        return pa.float64()
    if isinstance(sample, tuple):
        return pa.list_(pa.int64())
    return pa.string()


def _column_value(value):
    return list(value) if isinstance(value, tuple) else value


def _train(structure, x, y, seeds, lr, gain, layers, chunk_size, devices):
    """Per-element training: ({"h", "y", "w", "loss"} numpy, status [E] int32)."""
    from ..training import train

    run = train(structure, x, y, seeds=seeds, lr=lr, gain=gain, layers=layers,
                chunk_size=chunk_size, devices="all" if devices is None else devices,
                progress=False)
    out = {k: np.asarray(getattr(run, k)) for k in ("h", "y", "w", "loss")}
    return out, np.asarray(run.status, np.int32)


def _check_devices(devices):
    if devices is None:
        return None
    local = jax.local_devices()
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices must be between 1 and {len(local)} (this process's local "
                             f"devices); got {devices}.")
        return local[:int(devices)]
    devices = list(devices)
    if not devices or any(d not in local for d in devices):
        raise ValueError(f"devices must be None, a count, or a non-empty list of this process's "
                         f"local devices {local}; got {devices}.")
    return devices


_BARRIERS = [0]
_BARRIER_TIMEOUT_MS = 3_600_000  # the leader may be deleting a large sweep (--force)


def _barrier(num_processes, name):
    """Wait until every process gets here. Through the coordination service of
    ``jax.distributed`` when it offers a barrier (no devices involved, so hosts may hold
    different numbers of devices), else through a tiny collective over all devices."""
    if num_processes == 1:
        return
    _BARRIERS[0] += 1
    name = f"{name} #{_BARRIERS[0]}"
    try:
        from jax._src import distributed

        client = distributed.global_state.client
    except ImportError:
        client = None
    if client is not None and hasattr(client, "wait_at_barrier"):
        client.wait_at_barrier(name, _BARRIER_TIMEOUT_MS)
    else:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _check_out(out):
    from ._units import writable_folder

    return writable_folder(out, name="out")


def _versions():
    import jaxlib

    from .. import __version__

    return {"rsd": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__}


def _on_terminal():
    import sys

    return sys.stderr.isatty()

