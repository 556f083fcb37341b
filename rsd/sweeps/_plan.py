"""The plan of a sweep: cells, compiled groups, elements and chunks.

* A **cell** is one combination of the grid's values, a validated ``Setting``; cells
  are numbered in the grid's product order (the first grid key varies slowest).
* An **element** is a (cell, seed) pair, numbered cell-major, then by seed:
  ``element = cell · len(seeds) + seed_index``.
* Fields that change neither array shapes nor the compiled program — ``lr``, ``gain``,
  ``dx2``, ``dy2`` (and the seed) — are data: cells that differ only in them share a
  **group**, one compiled program whose elements each carry their own values. Every
  other field (width, depth, architecture, activation, steps, optimizer, loss, ...)
  defines the group.
* Each group's elements, in element order, are cut into **chunks** of ``chunk_size``
  (the last one shorter); chunks are numbered group after group. A chunk is the unit of
  work, of storage (one Parquet part) and of resumption.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from ..training import Setting, seed_footprint
from ..training import parameter_count as network_parameter_count
from ._plugins import TASKS, TaskData
from ._spec import SweepSpec

__all__ = ["Cell", "Group", "Chunk", "Plan", "ChunkEstimate", "make_plan", "describe_plan",
           "estimate_chunk", "group_layers", "parameter_count", "cell_data", "DATA_FIELDS",
           "ASSUMED_BANDWIDTH"]

# Setting fields that vary per element inside one compiled program.
DATA_FIELDS = Setting.HYPERPARAMETERS
"""The ``Setting`` fields that are data to one compiled program (lr, gain, dx2, dy2):
cells that differ only in them share a group."""
# Assumed memory bandwidth of the time estimate (bytes/s): training a small network on
# two points is memory-bound, each step streams every parameter about four times
# (forward, backward, read and write of the update: 16 bytes per float32 parameter).
ASSUMED_BANDWIDTH = 10e9
"""Memory bandwidth (bytes per second) assumed by the time estimate of
:func:`estimate_chunk` and ``rsd sweep --dry-run``."""
_PASSES = 4


@dataclasses.dataclass(frozen=True)
class Cell:
    """One grid combination: ``values`` (grid key → value) and its validated ``setting``."""

    index: int
    values: tuple[tuple[str, object], ...]
    setting: Setting
    group: int


@dataclasses.dataclass(frozen=True)
class Group:
    """Cells that share one compiled program: ``structure`` is their setting with the
    data fields (``DATA_FIELDS``) and the name taken from the base."""

    index: int
    structure: Setting
    cells: tuple[int, ...]
    chunks: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A unit of work: ``elements`` (global element ids, ascending) of group ``group``."""

    index: int
    group: int
    elements: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a sweep will do, derived from its spec alone (no training)."""

    spec: SweepSpec
    base: Setting
    cells: tuple[Cell, ...]
    groups: tuple[Group, ...]
    chunks: tuple[Chunk, ...]
    layers: tuple[int, ...]

    @property
    def num_seeds(self) -> int:
        return len(self.spec.seeds)

    @property
    def num_elements(self) -> int:
        return len(self.cells) * self.num_seeds

    def element(self, element: int) -> tuple[int, int]:
        """(cell index, seed) of a global element id."""
        cell, k = divmod(int(element), self.num_seeds)
        return cell, int(self.spec.element_seeds(cell, k))

    @property
    def max_steps(self) -> int:
        return max(c.setting.steps for c in self.cells)

    @property
    def max_layers(self) -> int:
        return max(len(_layers_of(c.setting, self.layers)) for c in self.cells)

    def trajectory_chunk_len(self) -> int:
        """Elements per Zarr chunk of ``trajectories.zarr``: ``chunk_size`` when every Zarr
        chunk of that length lies inside one sweep chunk (so no two processes ever write
        the same Zarr chunk), else 1 (one Zarr chunk per element)."""
        size = self.spec.chunk_size
        owner = {}
        for chunk in self.chunks:
            for block in {e // size for e in chunk.elements}:
                if owner.setdefault(block, chunk.index) != chunk.index:
                    return 1
        return size


def make_plan(spec: SweepSpec) -> Plan:
    """Expand ``spec`` into validated cells, groups and chunks; return the :class:`Plan`.

    Cells are numbered in product order (the first grid key slowest), elements
    (cell, seed) cell-major; cells that differ only in ``DATA_FIELDS`` share a group
    (one compiled program), and each group's elements are cut into chunks of
    ``spec.chunk_size``.

    A cell's setting is its paper row (the grid's ``row``, else the base's) with
    ``[set]`` and its grid values applied; an ``in_dim``/``out_dim`` it leaves to the
    data (None) is taken from its task's data.

    Raises ValueError naming the grid values of a cell whose combination the
    ``Setting`` refuses, or whose recorded layers its network does not have, or that its
    task refuses (task ``two_points``: ``in_dim``, ``out_dim``, ``dx2``, ``dy2`` must be
    set), or whose ``in_dim``/``out_dim`` differ from its task's data, or whose data
    shapes or pair differ from another cell's of its group, or with fewer steps than
    ``record.every``.
    """
    if not isinstance(spec, SweepSpec):
        raise ValueError(f"spec must be an rsd.sweeps.SweepSpec; got {type(spec).__name__}.")
    if spec.task not in TASKS:
        raise ValueError(f"spec key 'task.name': task {spec.task!r} is no longer registered; "
                         f"registered: {', '.join(TASKS)}.")
    base = spec.base_setting()
    combos = list(itertools.product(*(values for _, values in spec.grid)))
    cells, structures, shapes, data = [], {}, {}, {}
    for index, combo in enumerate(combos):
        values = spec.cell_values(combo)
        where = "grid cell " + ", ".join(f"{k}={v!r}" for k, v in values) if values else "the base"
        if spec.layers is not None:
            values_and_layers = values + (("layers", spec.layers),)
        else:
            values_and_layers = values
        try:
            setting = spec.cell_setting(values_and_layers)
        except ValueError as error:
            raise ValueError(f"spec {where}: {error}") from None
        setting, form = _task_setting(spec, where, setting, data)
        if setting.steps < spec.record_every:
            raise ValueError(f"spec key 'record.every' = {spec.record_every} exceeds the "
                             f"{setting.steps} steps of {where}; it must be at most the steps.")
        structure = setting.replace(name=base.name, **{f: getattr(base, f) for f in DATA_FIELDS})
        if structure not in structures:  # the layers depend on the structure alone
            _check_layers(where, setting)
            structures[structure] = len(structures)
            shapes[structure] = form
        elif shapes[structure] != form:
            raise ValueError(f"spec {where}: task {spec.task!r} gives data of shapes and pair "
                             f"{form}, another cell of its compiled group {shapes[structure]}; "
                             "a group's cells must agree.")
        group = structures[structure]
        cells.append(Cell(index=index, values=values, setting=setting, group=group))

    num_seeds = len(spec.seeds)
    groups, chunks = [], []
    by_group = {g: [] for g in structures.values()}
    for cell in cells:
        by_group[cell.group].append(cell.index)
    for structure, g in structures.items():
        members = tuple(by_group[g])
        elements = [c * num_seeds + k for c in members for k in range(num_seeds)]
        ids = []
        for start in range(0, len(elements), spec.chunk_size):
            ids.append(len(chunks))
            chunks.append(Chunk(index=len(chunks), group=g,
                                elements=tuple(elements[start:start + spec.chunk_size])))
        groups.append(Group(index=g, structure=structure, cells=members, chunks=tuple(ids)))
    layers = spec.layers if spec.layers is not None else base.layers
    return Plan(spec=spec, base=base, cells=tuple(cells), groups=tuple(groups),
                chunks=tuple(chunks), layers=layers)


def cell_data(spec: SweepSpec, setting: Setting, cache: dict | None = None) -> TaskData:
    """The :class:`TaskData` of ``spec``'s task for one cell's setting (``cache``: a dict
    of earlier answers by setting)."""
    if cache is not None and setting in cache:
        return cache[setting]
    out = TASKS[spec.task](setting)
    if not isinstance(out, TaskData):
        raise ValueError(f"task {spec.task!r} must return an rsd.sweeps.TaskData; got "
                         f"{type(out).__name__}.")
    if cache is not None:
        cache[setting] = out
    return out


def _task_setting(spec, where, setting, cache):
    """The cell's setting with in_dim/out_dim taken from its task's data where None, and
    the data's form (x shape, y shape, pair); ValueError naming the cell otherwise."""
    try:  # the data must exist (two points: in the working precision)
        data = cell_data(spec, setting, cache)
    except ValueError as error:
        raise ValueError(f"spec {where}: {error}") from None
    x_shape, y_shape = tuple(np.shape(data.x)), tuple(np.shape(data.y))
    if len(x_shape) != 2 or len(y_shape) != 2 or x_shape[0] != y_shape[0]:
        raise ValueError(f"spec {where}: task {spec.task!r} must give x [n, in_dim] and y "
                         f"[n, out_dim]; got shapes {x_shape} and {y_shape}.")
    dims = {"in_dim": x_shape[1], "out_dim": y_shape[1]}
    for field, size in dims.items():
        if getattr(setting, field) not in (None, size):
            raise ValueError(f"spec {where}: Setting.{field} = {getattr(setting, field)} but "
                             f"task {spec.task!r} gives data with {size}; set {field} = {size} "
                             "(or leave it to the data).")
    missing = {f: v for f, v in dims.items() if getattr(setting, f) is None}
    if missing:
        setting = setting.replace(**missing)
    return setting, (x_shape, y_shape, tuple(data.pair))


def _check_layers(where, setting):
    num_hidden = setting.network().num_hidden
    layers = setting.layers if setting.layers is not None else ()
    bad = [k for k in layers if k >= num_hidden]
    if bad:
        raise ValueError(f"spec {where}: recorded layer {bad[0]} does not exist; this network has "
                         f"hidden layers 0 … {num_hidden - 1} (set [record] layers).")


def _layers_of(setting, default):
    if setting.layers is not None:
        return setting.layers
    return default if default is not None else tuple(range(setting.network().num_hidden))


def group_layers(plan: Plan, group: Group) -> tuple[int, ...]:
    """The hidden layers a group records (the setting's, else every hidden layer)."""
    return _layers_of(group.structure, plan.layers)


def parameter_count(setting: Setting) -> int:
    """Number of trainable parameters of the setting's network (shapes traced, nothing run;
    :func:`rsd.training.parameter_count`, the count ``train``'s memory model uses)."""
    return network_parameter_count(setting.network())


@dataclasses.dataclass(frozen=True)
class ChunkEstimate:
    """Estimated cost of one full chunk of a group (see :func:`estimate_chunk`)."""

    parameters: int
    memory_bytes: int
    seconds: float


def estimate_chunk(plan: Plan, group: Group, elements: int | None = None) -> ChunkEstimate:
    """Memory and time of one chunk of ``elements`` (default: the group's largest chunk).

    Memory (float32): per element :func:`rsd.training.seed_footprint`, the estimate
    ``train`` itself chunks by: the parameters four times (parameters, gradient, update,
    new parameters) and the optimizer's moments, the hidden activations on the task's
    n data points three times, ceil(steps / every) records of the K recorded layers and
    four scalars (``[record] every``), and the element's own data (x and y). Time:
    ``steps × elements × 16 · parameters bytes`` over an assumed ``ASSUMED_BANDWIDTH`` =
    10 GB/s (memory-bound floor; small networks are overhead-bound and run slower than
    this, large ones on an accelerator faster).
    """
    if elements is None:
        elements = max(len(plan.chunks[c].elements) for c in group.chunks)
    setting = group.structure
    network = setting.network()
    n = network_parameter_count(network)
    k = len(group_layers(plan, group))
    x, y = (np.shape(a) for a in cell_data(plan.spec, plan.cells[group.cells[0]].setting)[:2])
    records = math.ceil(setting.steps / plan.spec.record_every)
    bytes_per = seed_footprint(network, setting.optimizer, n=x[0], num_records=records, num_layers=k,
                               data_per_seed=math.prod(x) + math.prod(y), dtype="float32")
    seconds = setting.steps * elements * _PASSES * 4 * n / ASSUMED_BANDWIDTH
    return ChunkEstimate(parameters=n, memory_bytes=elements * bytes_per, seconds=seconds)


def describe_plan(plan: Plan, *, num_processes: int = 1) -> str:
    """The plan as text (what ``rsd sweep --dry-run`` prints): the cells, the groups with
    their per-chunk memory and time estimates (:func:`estimate_chunk`), and the chunks;
    with ``num_processes`` > 1, which process takes which chunk."""
    spec = plan.spec
    keys = spec.grid_keys
    lines = [
        f"sweep of {spec.table}/{spec.row}: {len(plan.cells)} cells"
        + (f" ({' × '.join(f'{len(v)} {k}' for k, v in spec.grid)})" if keys else "")
        + f" × {plan.num_seeds} seeds = {plan.num_elements} elements",
        f"per element: {_analyses_text(spec)}; "
        f"records layers {_layers_text(plan)}"
        + (f" every {spec.record_every} steps" if spec.record_every != 1 else "")
        + (f"; stops below loss {spec.stop_loss:g}" if spec.stop_loss is not None else "")
        + ("; full trajectories to trajectories.zarr" if spec.trajectories else ""),
        f"compiled groups: {len(plan.groups)} (data per element: {', '.join(DATA_FIELDS)}, seed)",
    ]
    for group in plan.groups:
        s = group.structure
        sizes = [len(plan.chunks[c].elements) for c in group.chunks]
        est = estimate_chunk(plan, group)
        largest = max(sizes)
        lines.append(
            f"  group {group.index}: {s.architecture} {s.activation} width={s.width} depth={s.depth} "
            f"steps={s.steps} {s.optimizer} loss={s.loss} layers={list(group_layers(plan, group))}: "
            f"{len(group.cells)} cells, {len(group.cells) * plan.num_seeds} elements, "
            f"{len(sizes)} chunks of {_sizes(sizes)} elements")
        lines.append(
            f"    per chunk of {largest}: {est.parameters} parameters per element, "
            f"memory ≈ {est.memory_bytes / 1e6:.3g} MB, time ≈ {_seconds(est.seconds)} (estimate: "
            f"steps × elements × 16 B × parameters / {ASSUMED_BANDWIDTH / 1e9:g} GB/s)")
    sizes = [len(c.elements) for c in plan.chunks]
    lines.append(f"chunks: {len(plan.chunks)} (chunk_size {spec.chunk_size}; elements per chunk "
                 f"{_sizes(sizes)})" + (f", {num_processes} processes take chunk c where "
                                        f"c % {num_processes} == process id" if num_processes > 1 else ""))
    return "\n".join(lines)


def _analyses_text(spec):
    text = "fit (eta_h, eta_y)" if spec.fit_rates else "no fit"
    others = [a for a in spec.analyses if a != "rates"]
    if others:
        text += ", analyses " + ", ".join(others)
    if spec.task != "two_points":
        text = f"task {spec.task}; " + text
    return text


def _layers_text(plan):
    if "layers" in plan.spec.grid_fields:
        return "per cell (grid key layers)"
    if "row" in plan.spec.grid_fields and plan.spec.layers is None:
        return "per cell (the row's)"
    return str(list(plan.layers)) if plan.layers is not None else "all"


def _sizes(sizes):
    distinct = sorted(set(sizes), reverse=True)
    if len(distinct) == 1:
        return str(distinct[0])
    return ", ".join(f"{s} (×{sizes.count(s)})" for s in distinct)


def _seconds(s):
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    return f"{s / 60:.3g} min"

