"""What a sweep trains on (tasks) and what it computes from each chunk's records (analyses).

* A **task** is a function ``task(setting) -> TaskData``: one cell's ``Setting`` to the
  data every element of the cell trains on (x [n, in_dim], y [n, out_dim]), the pair
  (i, j) whose h, y, w are recorded, and the pair's (dx2, dy2) the fits use (None:
  the squared distances ``train`` measures on the pair, ``Run.dx2``/``Run.dy2``). It
  raises ``ValueError`` for a setting it cannot serve. ``TASKS`` maps spec names
  (``[task] name``) to tasks; :func:`register_task` adds one.
* An **analysis** (:class:`Analysis`) declares result columns (name → pyarrow type) and
  computes them from a chunk's :class:`ChunkRecords`, after the analyses listed before
  it (``requires``). ``ANALYSES`` maps spec names (``[analysis] names``) to analyses;
  :func:`register_analysis` adds one.

Shipped tasks: ``"two_points"`` (``rsd.data.two_points`` of the setting's dx2, dy2,
in_dim, out_dim) and ``"xor"`` (``rsd.data.xor``: 4 points). Shipped analyses:
``"rates"`` (the fit of (η_h, η_y) at the first recorded layer; :func:`rates_analysis`
makes one with any vector field), ``"final_distance"``
(the theory's h∞ from each element's h(0), y(0) and fitted rates),
``"rates_all_layers"`` (the fit at every recorded layer), ``"loss_rate"`` (η_ȳ fitted
to the loss curve) and ``"initial_state"`` (h, y, w at the first record and the pair's
squared distances as the fits use them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import numpy as np

__all__ = ["TaskData", "ChunkRecords", "Analysis", "TASKS", "ANALYSES", "register_task",
           "register_analysis", "rates_analysis", "RATE_COLUMNS"]

RATE_COLUMNS = ("eta_h", "eta_y", "fit_loss", "r2_h", "r2_y", "r2_w", "fit_status")
"""The fit columns every results table holds (NaN and ``fit_status`` −2 = SKIPPED unless
the ``"rates"`` analysis fills them)."""


class TaskData(NamedTuple):
    """One cell's data, as a task returns it.

    Fields:
        x: inputs [n, in_dim] (numpy or jax array), the same for every seed of the cell.
        y: targets [n, out_dim].
        pair: the indices (i, j) of the two points whose h, y, w are recorded.
        dx2, dy2: ||x_j − x_i||², ||y*_j − y*_i||² the fits use; None: ``Run.dx2`` and
            ``Run.dy2``, the squared distances ``train`` measures on the pair.
    """

    x: Any
    y: Any
    pair: tuple[int, int] = (0, 1)
    dx2: float | None = None
    dy2: float | None = None


class ChunkRecords(NamedTuple):
    """What one chunk of E elements recorded, as analyses see it (numpy arrays).

    Fields:
        h: [E, T, K] squared representational distance at the ``layers`` (rsd hidden
            layer indices) of the chunk's group; T records at steps ``ts``.
        y, w, loss: [E, T] (see :class:`rsd.training.Run`).
        e0: [E] the pair's mean-output error at step 0 (``Run.e0``), the loss-rate fit's
            start.
        ts: [T] the step of each record (``k · arange(T)`` with ``[record] every = k``).
        status: [E] int32 :class:`rsd.training.Status` of each element's training.
        settings: the E elements' ``Setting`` (their cells' settings).
        dx2, dy2: [E] float64, the pair's squared distances (the task's, or ``Run``'s).
        layers: the rsd hidden-layer indices of h's last axis.
        batch: the group's largest chunk size; fits padded to it compile one program
            per group, whatever the size of the group's last chunk.
        columns: the columns the analyses before this one produced (name → [E] array).
    """

    h: np.ndarray
    y: np.ndarray
    w: np.ndarray
    loss: np.ndarray
    e0: np.ndarray
    ts: np.ndarray
    status: np.ndarray
    settings: tuple
    dx2: np.ndarray
    dy2: np.ndarray
    layers: tuple[int, ...]
    batch: int
    columns: dict


@dataclasses.dataclass(frozen=True)
class Analysis:
    """A per-chunk computation whose results are columns of ``results.parquet``.

    Fields:
        columns: ``columns(plan) -> {name: pyarrow.DataType}``, the columns it adds for
            a plan (the same for every chunk). Names in ``RATE_COLUMNS`` fill the fit
            columns every table holds instead of adding new ones.
        compute: ``compute(records) -> {name: [E] array}`` for a :class:`ChunkRecords`
            of E elements; every declared column must be returned. It runs on the host
            and must not raise for elements it cannot serve: NaN (or a status) instead.
        requires: names of analyses that must come before it in ``[analysis] names``
            (their columns are in ``records.columns``).
    """

    columns: Callable[[Any], dict]
    compute: Callable[[ChunkRecords], dict]
    requires: tuple[str, ...] = ()


TASKS: dict[str, Callable[[Any], TaskData]] = {}
"""Sweep tasks by ``[task] name``: ``task(setting) -> TaskData`` (see :func:`register_task`)."""
ANALYSES: dict[str, Analysis] = {}
"""Sweep analyses by ``[analysis] names`` entry (see :func:`register_analysis`)."""


def register_task(name: str, task: Callable[[Any], TaskData]) -> None:
    """Make ``task`` available to specs as ``[task] name = "<name>"``.

    Args:
        name: a new, non-empty name (an existing one raises ``ValueError``; remove a
            task with ``del TASKS[name]``).
        task: ``task(setting) -> TaskData``: the data of one cell. Cells of one compiled
            group must get data of equal shapes and the same pair; a setting whose
            ``in_dim``/``out_dim`` is None takes the data's. Raise ``ValueError`` for a
            setting the task cannot serve (``make_plan`` reports it with the cell).
    """
    _check_name("task", name, TASKS)
    if not callable(task):
        raise ValueError(f"task must be a function setting -> TaskData; got {task!r}.")
    TASKS[name] = task


def register_analysis(name: str, analysis: Analysis) -> None:
    """Make ``analysis`` available to specs as an entry of ``[analysis] names``.

    Args:
        name: a new, non-empty name (an existing one raises ``ValueError``; remove an
            analysis with ``del ANALYSES[name]``).
        analysis: an :class:`Analysis`; the names it ``requires`` must be registered.
    """
    _check_name("analysis", name, ANALYSES)
    if not isinstance(analysis, Analysis):
        raise ValueError(f"analysis must be an rsd.sweeps.Analysis; got {type(analysis).__name__}.")
    unknown = [r for r in analysis.requires if r not in ANALYSES]
    if unknown:
        raise ValueError(f"analysis {name!r} requires {unknown[0]!r}, which is not registered; "
                         f"registered: {', '.join(ANALYSES)}.")
    ANALYSES[name] = analysis


def load_plugins(*sources) -> list:
    """Import modules that register tasks and analyses (what ``rsd sweep --plugins`` does).

    Args:
        sources: each a path to a Python file (``my_tasks.py``) or an importable module
            name (``mylab.rsd_tasks``). A file runs as a fresh module named after it.

    Returns:
        The imported modules, in order. A file that does not exist or a module that
        cannot be found raises ``ValueError`` naming it; errors inside a module propagate.
    """
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    modules = []
    for source in sources:
        source = str(source)
        if source.endswith(".py") or "/" in source or "\\" in source:
            path = Path(source)
            if not path.is_file():
                raise ValueError(f"--plugins: no such Python file {source!r}.")
            name = f"rsd_plugins_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # so that pickling and dataclasses find it
            spec.loader.exec_module(module)
        else:
            try:
                module = importlib.import_module(source)
            except ModuleNotFoundError as error:
                if error.name is None or not source.startswith(error.name):
                    raise  # the module exists; something it imports does not
                raise ValueError(f"--plugins: no module named {source!r} (give a module "
                                 "importable from here, or a path to a .py file).") from None
        modules.append(module)
    return modules


def _check_name(kind, name, registry):
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {kind} name must be a non-empty string; got {name!r}.")
    if name in registry:
        raise ValueError(f"{kind} {name!r} is already registered; remove it first "
                         f"(del {'TASKS' if kind == 'task' else 'ANALYSES'}[{name!r}]).")


# --- tasks ------------------------------------------------------------------------------

def _two_points(setting) -> TaskData:
    """rsd.data.two_points(dx2, dy2, in_dim, out_dim) of the setting; the fits use the
    pair's squared distances as ``train`` measures them on the float32 points (``Run.dx2``,
    ``Run.dy2``), as the experiments do, not the nominal values the points are built from
    (they differ by round-off, e.g. dy2 0.49999991 for 0.5)."""
    from ..data import two_points

    missing = [f for f in ("in_dim", "out_dim", "dx2", "dy2") if getattr(setting, f) is None]
    if missing:
        raise ValueError(
            f"a sweep of task 'two_points' trains on two points, so Setting fields "
            f"{', '.join(missing)} must be set (a '2_points' base row sets them; otherwise give "
            "them in [set] or [grid]).")
    x, y = two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=setting.out_dim)
    return TaskData(x=x, y=y, pair=(0, 1))


def _xor(setting) -> TaskData:
    """rsd.data.xor(): x ∈ {0,1}² (00, 01, 10, 11), y* = x₁ XOR x₂; the pair is the
    setting's ``pair`` attribute if it has one, else (0, 1); dx2, dy2 are ``Run``'s."""
    from ..data import xor

    x, y = xor()
    pair = tuple(getattr(setting, "pair", (0, 1)))
    if len(pair) != 2 or not all(isinstance(i, (int, np.integer)) and 0 <= i < x.shape[0]
                                 for i in pair) or pair[0] == pair[1]:
        raise ValueError(f"the xor task's pair must be two distinct indices in [0, 4); "
                         f"got {pair!r}.")
    return TaskData(x=x, y=y, pair=(int(pair[0]), int(pair[1])))


TASKS["two_points"] = _two_points
TASKS["xor"] = _xor


# --- analyses ---------------------------------------------------------------------------

def _float_columns(names):
    import pyarrow as pa

    return {n: pa.float64() for n in names}


def _padded_fit(records, h, vector_field=None):
    """fit_rates_masked of (h [E, T], y, w) padded to ``records.batch`` elements (pads
    masked as untrained): one fit program per group, whatever the chunk's size."""
    from ..fitting import fit_rates_masked
    from ..training import Status

    e = h.shape[0]
    pad = max(records.batch - e, 0)
    take = np.concatenate([np.arange(e), np.full(pad, e - 1)]).astype(int)
    trained = np.concatenate([records.status == Status.OK, np.zeros(pad, bool)])
    # Records every step (the default): the fit's own default times, as before ts existed.
    ts = None if np.array_equal(records.ts, np.arange(records.ts.size)) else records.ts
    fit = fit_rates_masked(h[take], records.y[take], records.w[take], records.dx2[take],
                           records.dy2[take], trained, ts=ts, vector_field=vector_field)
    return tuple(np.asarray(a)[:e] for a in fit)


def rates_analysis(vector_field=None, *, prefix: str = "") -> Analysis:
    """The fit of (η_h, η_y) to (h at the first recorded layer, y, w) of every trained
    element, with any vector field, as an :class:`Analysis` to register.

    Args:
        vector_field: the field the fit integrates (any ``vector_field`` of
            :func:`rsd.fitting.fit_rates`, e.g. a :class:`rsd.theory.WeightedField`);
            None: the theory's.
        prefix: put before every column name. ``""`` fills the table's fit columns
            (``RATE_COLUMNS``, as ``"rates"`` does); any other prefix adds columns
            ``{prefix}eta_h``, ``{prefix}eta_y``, ``{prefix}fit_loss``, ``{prefix}r2_h``,
            ``{prefix}r2_y``, ``{prefix}r2_w`` and ``{prefix}fit_status``, so that several
            fields' fits sit side by side in one table.

    The spec names an analysis, not its field: a folder's hash does not change when a
    registered name's field does, so give each field a name of its own.

    ```python
    from rsd import sweeps, theory

    sweeps.register_analysis("rates_dy_doubled", sweeps.rates_analysis(
        theory.vector_field_dy_doubled, prefix="dy_doubled_"))
    spec = sweeps.parse_spec({"base": {"table": "2_points", "row": "narrow"},
                              "analysis": {"names": ["rates", "rates_dy_doubled"]}})
    print([f.name for f in sweeps.result_schema(sweeps.make_plan(spec))][-2:])
    ```
    """
    import pyarrow as pa

    if not isinstance(prefix, str):
        raise ValueError(f"prefix must be a string, got {prefix!r}.")
    names = [prefix + n for n in RATE_COLUMNS]

    def columns(plan):
        return {**_float_columns(names[:-1]), names[-1]: pa.int32()}

    def compute(records):
        eta_h, eta_y, fit_loss, r2, status = _padded_fit(records, records.h[:, :, 0], vector_field)
        return dict(zip(names, (eta_h, eta_y, fit_loss, r2[:, 0], r2[:, 1], r2[:, 2], status)))

    compute.__doc__ = (f"(η_h, η_y) fitted with {'the theory' if vector_field is None else vector_field!r}'s "
                       "field to (h at the first recorded layer, y, w) of every trained element.")
    return Analysis(columns=columns, compute=compute)


def _final_distance(records):
    """h∞ = C/2 + sqrt(C²/4 + k·dy2), k = η_h·dx2/η_y, C = h0 − k·y0/h0
    (:func:`rsd.theory.final_distance`) of each element's h(0) (first recorded layer),
    y(0) and fitted rates; NaN where any of them is missing or out of range."""
    from ..theory import final_distance

    h0 = records.h[:, 0, 0].astype(np.float64)
    y0 = records.y[:, 0].astype(np.float64)
    eta_h = np.asarray(records.columns["eta_h"], np.float64)
    eta_y = np.asarray(records.columns["eta_y"], np.float64)
    dx2, dy2 = records.dx2, records.dy2
    args = (h0, y0, eta_h, eta_y, dx2, dy2)
    ok = np.all([np.isfinite(a) for a in args], axis=0)
    ok &= (h0 > 0) & (y0 >= 0) & (eta_h > 0) & (eta_y > 0) & (dx2 > 0) & (dy2 >= 0)
    if not ok.any():
        return {"final_distance_predicted": np.full(h0.shape, np.nan)}
    # Masked elements get a valid stand-in (never an error), then NaN.
    safe = [np.where(ok, a, a[ok][0]) for a in args]
    value = np.asarray(final_distance(*safe), np.float64)
    return {"final_distance_predicted": np.where(ok, value, np.nan)}


def _loss_rate_columns(plan):
    import pyarrow as pa

    return {"eta_mean": pa.float64(), "eta_mean_status": pa.int32(), "e0": pa.float64()}


def _loss_rate(records):
    """η_ȳ fitted to each trained element's loss curve (:func:`rsd.fitting.fit_loss_rate`,
    with h at the first recorded layer, y and w), at the record steps; NaN and status
    ``NOT_FITTED`` for an element whose training diverged or whose loss is not finite.
    Also the fit's start ``e0`` (the pair's mean-output error at step 0), which the
    analytic loss curve :func:`rsd.theory.loss_curve` needs."""
    from ..fitting import NOT_FITTED, fit_loss_rate
    from ..training import Status

    e = records.h.shape[0]
    eta = np.full(e, np.nan)
    status = np.full(e, NOT_FITTED, np.int32)
    usable = (records.status == Status.OK) & np.all(np.isfinite(records.loss), axis=-1)
    idx = np.flatnonzero(usable)
    if idx.size:
        # Every slot holds a usable element's data (the others' results are discarded), so
        # the fit's program depends on the chunk's size only.
        fill = np.where(usable, np.arange(e), idx[0])
        zs = np.stack([records.h[fill, :, 0], records.y[fill], records.w[fill]], -1)
        ts = None if np.array_equal(records.ts, np.arange(records.ts.size)) else records.ts
        fit = fit_loss_rate(records.loss[fill], zs, records.dy2[fill], records.e0[fill], ts=ts)
        eta[idx] = np.asarray(fit.eta_mean)[idx]
        status[idx] = np.asarray(fit.status)[idx]
    return {"eta_mean": eta, "eta_mean_status": status, "e0": np.asarray(records.e0, np.float64)}


def _all_layers(plan):
    from ._plan import group_layers

    return sorted({k for g in plan.groups for k in group_layers(plan, g)})


_LAYER_COLUMNS = ("eta_h", "eta_y", "fit_loss", "r2_h", "r2_y", "r2_w")


def _layer_columns(plan):
    import pyarrow as pa

    out = {}
    for k in _all_layers(plan):
        out.update({f"{name}_layer{k}": pa.float64() for name in _LAYER_COLUMNS})
        out[f"fit_status_layer{k}"] = pa.int32()
    return out


def _rates_all_layers(records):
    """(η_h, η_y) fitted to (h at each recorded layer, y, w), every layer of every element
    in one batched fit (as :func:`rsd.fitting.fit_layers` does); a layer a group does not
    record gets no values (NaN, and a null status)."""
    e, t, k = records.h.shape
    # [E, T, K] -> [E·K, T], element-major; y, w, dx2, dy2 and the mask repeat per layer,
    # padded to the group's largest chunk (one fit program per group).
    by_layer = records._replace(h=np.moveaxis(records.h, -1, 1).reshape(e * k, t, 1),
                                y=np.repeat(records.y, k, axis=0), w=np.repeat(records.w, k, axis=0),
                                status=np.repeat(records.status, k), dx2=np.repeat(records.dx2, k),
                                dy2=np.repeat(records.dy2, k), batch=records.batch * k)
    eta_h, eta_y, fit_loss, r2, status = (np.asarray(a).reshape((e, k) + np.shape(a)[1:])
                                          for a in _padded_fit(by_layer, by_layer.h[:, :, 0]))
    out = {}
    for index, layer in enumerate(records.layers):
        values = (eta_h, eta_y, fit_loss, r2[..., 0], r2[..., 1], r2[..., 2])
        out.update({f"{name}_layer{layer}": v[:, index] for name, v in zip(_LAYER_COLUMNS, values)})
        out[f"fit_status_layer{layer}"] = status[:, index]
    return out


ANALYSES["rates"] = rates_analysis()
ANALYSES["final_distance"] = Analysis(
    columns=lambda plan: _float_columns(["final_distance_predicted"]), compute=_final_distance,
    requires=("rates",))
ANALYSES["rates_all_layers"] = Analysis(columns=_layer_columns, compute=_rates_all_layers)
ANALYSES["loss_rate"] = Analysis(columns=_loss_rate_columns, compute=_loss_rate)


def _initial_state(records):
    """h0, y0, w0: the first record (first recorded layer) of every element, as recorded;
    pair_dx2, pair_dy2: the pair's squared distances the fits use."""
    return {"h0": records.h[:, 0, 0], "y0": records.y[:, 0], "w0": records.w[:, 0],
            "pair_dx2": records.dx2, "pair_dy2": records.dy2}


ANALYSES["initial_state"] = Analysis(
    columns=lambda plan: _float_columns(["h0", "y0", "w0", "pair_dx2", "pair_dy2"]),
    compute=_initial_state)
