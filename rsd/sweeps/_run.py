"""Running a sweep: every chunk of the plan trained, fitted and stored, resumably.

A chunk is one call of :func:`rsd.training.train` on the chunk's group structure with
per-element data: the data the spec's task gives each element's cell (task
``two_points``: the two points of its (dx2, dy2)), its learning rate, gain and seed,
and the spec's ``stop_loss`` and ``record_every``; then the spec's analyses, in order,
each a batched computation over the chunk's records (``"rates"``: one fit of (η_h, η_y)
per element, padded to the group's largest chunk so that a group compiles one fit
program). Its rows go to one Parquet part (see :mod:`rsd.sweeps._store`). Several
processes (``jax.distributed``) split the chunks round-robin: process I of N takes
chunk c when c % N == I.
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
from ._plan import Plan, cell_data, group_layers, make_plan
from ._plugins import ANALYSES, RATE_COLUMNS, ChunkRecords
from ._spec import ROW, SweepSpec, load_spec
from ..fitting import FitStatus
from ..training import resolve_devices

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


def run_sweep(spec, out, *, force: bool = False, devices="all", progress: bool | None = None
              ) -> SweepReport:
    """Train, fit and store every (cell, seed) of ``spec`` under ``out``, resuming.

    Args:
        spec: a :class:`SweepSpec` or the path of a TOML spec.
        out: the sweep's folder (created). If it holds the same sweep (same spec hash),
            finished chunks are skipped; a different sweep raises ValueError unless
            ``force``, which deletes the sweep's files (manifest.json, results.parquet/,
            trajectories.zarr/, nothing else) and starts over.
        devices: where each chunk's elements are sharded, as :func:`rsd.training.train`'s
            argument: ``"all"`` (the default: every local device), an int n (the first n
            local devices), a list of local devices, or None (the default device, or the
            devices of an enclosing :func:`rsd.training.use_devices`).
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
    resolve_devices(devices)  # checked before the folder is touched
    out = _check_out(out)
    num_processes, process_id = jax.process_count(), jax.process_index()
    # Every process checks the folder (read-only) before the leader changes anything, so a
    # refused folder is refused by all of them alike; the others start once it is ready.
    _store.check_existing(out, spec.spec_hash, force=force, canonical=spec.canonical())
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
    """Train chunk ``index`` of ``plan`` and run its analyses.

    Args:
        plan: a :class:`Plan` (:func:`make_plan`).
        index: a chunk id in [0, len(plan.chunks)).
        devices: as in :func:`run_sweep`, but None by default (the default device).

    Returns:
        (its rows as a ``pyarrow.Table`` of :func:`result_schema`, its series {"h"
        [E, T, K], "y", "w", "loss" [E, T]} as numpy arrays, T = ceil(steps / every)).
    """
    import pyarrow as pa

    if not isinstance(plan, Plan):
        raise ValueError(f"plan must be an rsd.sweeps.Plan (make_plan); got {type(plan).__name__}.")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
            or not 0 <= index < len(plan.chunks):
        raise ValueError(f"index must be a chunk id in [0, {len(plan.chunks)}); got {index!r}.")
    spec = plan.spec
    chunk = plan.chunks[int(index)]
    group = plan.groups[chunk.group]
    layers = group_layers(plan, group)
    ids = np.asarray(chunk.elements, np.int64)
    cell_ids, seed_idx = np.divmod(ids, plan.num_seeds)
    seeds = spec.element_seeds(cell_ids, seed_idx)
    settings = [plan.cells[c].setting for c in cell_ids]
    lr = np.array([s.lr for s in settings])
    gain = np.array([s.gain for s in settings])

    cache = {}
    data = [cell_data(spec, s, cache) for s in settings]
    x = jnp.stack([d.x for d in data])
    y = jnp.stack([d.y for d in data])
    run = _train(group.structure, x, y, seeds, lr, gain, layers, data[0].pair, spec, devices)
    series = {k: np.asarray(getattr(run, k)) for k in ("h", "y", "w", "loss")}
    status = np.asarray(run.status, np.int32)
    e = ids.size
    # The task's (dx2, dy2) where it gives them, else (every shipped task) the pair's
    # squared distances as train measured them.
    run_dx2 = np.broadcast_to(np.asarray(run.dx2, np.float64), (e,))
    run_dy2 = np.broadcast_to(np.asarray(run.dy2, np.float64), (e,))
    dx2 = np.array([run_dx2[k] if d.dx2 is None else d.dx2 for k, d in enumerate(data)])
    dy2 = np.array([run_dy2[k] if d.dy2 is None else d.dy2 for k, d in enumerate(data)])

    schema = result_schema(plan)
    declared = _analysis_columns(plan)
    columns = {name: np.full(e, np.nan) for name in RATE_COLUMNS[:-1]}
    columns["fit_status"] = np.full(e, FIT_SKIPPED)
    batch = max(len(plan.chunks[c].elements) for c in group.chunks)
    for name in spec.analyses:
        records = ChunkRecords(h=series["h"], y=series["y"], w=series["w"], loss=series["loss"],
                               e0=np.broadcast_to(np.asarray(run.e0, np.float64), (e,)),
                               ts=np.asarray(run.record_steps), status=status,
                               settings=tuple(settings), dx2=dx2, dy2=dy2, layers=tuple(layers),
                               batch=batch, columns=dict(columns))
        produced = ANALYSES[name].compute(records)
        unknown = [c for c in produced if c not in declared[name]]
        if unknown:
            raise ValueError(f"analysis {name!r} returned column {unknown[0]!r}, which it does not "
                             "declare (Analysis.columns).")
        for column, kind in declared[name].items():
            if column in produced:
                columns[column] = produced[column]
            elif pa.types.is_floating(kind):
                columns[column] = np.full(e, np.nan)
            else:
                columns[column] = [None] * e

    for field in spec.grid_fields:
        if field == ROW:  # no Setting field: the cell's grid value
            columns[field] = [dict(plan.cells[c].values)[ROW] for c in cell_ids]
        else:
            columns[field] = [_column_value(getattr(s, field)) for s in settings]
    columns.update(
        element=ids, cell=cell_ids, seed=seeds,
        final_h=series["h"][:, -1, 0], final_loss=series["loss"][:, -1],
        train_status=status,
    )
    if spec.stop_loss is not None:
        columns["stop_step"] = np.asarray(run.stop_step, np.int64)
    arrays = [pa.array(np.asarray(columns[f.name]) if isinstance(columns[f.name], np.ndarray)
                       or f.name not in spec.grid_fields else columns[f.name], type=f.type)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema), series


def result_schema(plan: Plan):
    """The columns of ``results.parquet``: the grid's fields (named as in the spec; a key
    "a+b" gives columns a and b; the grid's ``row`` a string column), then

    * ``element`` (cell · len(seeds) + seed index), ``cell`` (grid product index), ``seed``;
    * ``eta_h``, ``eta_y``, ``fit_loss``, ``r2_h``, ``r2_y``, ``r2_w``: the fit of the
      theory to (h at the first recorded layer, y, w) by the ``"rates"`` analysis; NaN
      where not fitted;
    * ``final_h`` (last record of h at the first recorded layer), ``final_loss``;
    * ``train_status`` (:class:`rsd.training.Status`), ``fit_status``
      (:class:`rsd.fitting.FitStatus`, one enumeration for every row: ``NOT_FITTED`` = −1
      for an element whose training diverged, ``SKIPPED`` = −2 when the spec runs no
      ``"rates"`` analysis, e.g. ``[fit] rates = false``);
    * with ``[run] stop_loss``: ``stop_step`` (int64, ``Run.stop_step``: the first record
      step whose loss was below it, the element's steps if none);
    * the columns every other analysis of ``[analysis] names`` declares, in order
      (``"final_distance"``: ``final_distance_predicted``; ``"rates_all_layers"``:
      ``eta_h_layer{k}``, ``eta_y_layer{k}``, ``fit_loss_layer{k}``, ``r2_{h,y,w}_layer{k}``,
      ``fit_status_layer{k}`` for each recorded k; ``"loss_rate"``: ``eta_mean``,
      ``eta_mean_status``, ``e0``).

    Raises ValueError naming ``analysis.names`` when an analysis declares a column that
    another column already has.
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
    if plan.spec.stop_loss is not None:
        fields.append(pa.field("stop_step", pa.int64()))
    taken = {f.name for f in fields}
    for name, declared in _analysis_columns(plan).items():
        for column, kind in declared.items():
            if column in RATE_COLUMNS:
                continue
            if column in taken:
                raise ValueError(f"spec key 'analysis.names': analysis {name!r} declares column "
                                 f"{column!r}, which the results already have.")
            taken.add(column)
            fields.append(pa.field(column, kind))
    return pa.schema(fields)


def _analysis_columns(plan):
    """{analysis name: {column: pyarrow type}} of the spec's analyses, in order."""
    unknown = [n for n in plan.spec.analyses if n not in ANALYSES]
    if unknown:
        raise ValueError(f"spec key 'analysis.names': analysis {unknown[0]!r} is no longer "
                         f"registered; registered: {', '.join(ANALYSES)}.")
    return {name: dict(ANALYSES[name].columns(plan)) for name in plan.spec.analyses}


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


def _train(structure, x, y, seeds, lr, gain, layers, pair, spec, devices):
    """Per-element training of one chunk: the :class:`rsd.training.Run`."""
    from ..training import train

    return train(structure, x, y, seeds=seeds, lr=lr, gain=gain, layers=layers, pair=pair,
                 stop_loss=spec.stop_loss, record_every=spec.record_every,
                 chunk_size=spec.chunk_size, devices=devices,
                 progress=False)


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

