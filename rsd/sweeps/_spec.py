"""The sweep spec: a TOML file read into one frozen, validated record.

A spec names a base setting (a row of the paper's tables), fixed overrides, a grid
(every combination of the listed values of ``Setting`` fields), the seeds every cell
trains, what each element records and whether its rates are fitted::

    base = { table = "2_points", row = "narrow" }
    seeds = 64            # n -> seeds 0 … n−1, or a list of non-negative ints
    cell_seeds = "shared" # "distinct": cell c trains seeds[k] + c·(max(seeds) + 1)
    steps = 3000          # shortcut for [set] steps
    [set]                 # fixed overrides of the base setting
    [grid]                # lists of values of Setting fields
    width = [20, 50, 100]
    lr = [0.005, 0.01]
    "gain+steps" = [[0.9, 3000], [1.1, 6000]]   # fields joined by "+" vary together
    [record]
    layers = [10]         # rsd hidden-layer indices; default: the base row's
    trajectories = false  # true: full h, y, w, loss series to trajectories.zarr
    every = 1             # record every k-th step (steps 0, k, 2k, ...)
    [fit]
    rates = true
    [task]
    name = "two_points"   # what the cells train on: a key of rsd.sweeps.TASKS
    [analysis]
    names = ["rates"]     # keys of rsd.sweeps.ANALYSES; default ["rates"] if fit.rates else []
    [run]
    chunk_size = 64       # elements per compiled chunk
    stop_loss = 1e-3      # optional: a seed stops at the first record with loss below it

The grid key ``row`` (alone or joined, "row+lr") varies the paper row within
``base.table``: a cell's setting is then ``Setting.from_paper(table, row)`` with ``[set]``
and the other grid values applied.

Every mistake (unknown key at any level, empty or repeated grid values, a value the
``Setting`` refuses, a grid key that is no ``Setting`` field) raises ``ValueError``
naming the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from ..training import PAPER_TABLES, Setting
from ._plugins import ANALYSES, TASKS

__all__ = ["SweepSpec", "load_spec", "parse_spec"]

_TOP_KEYS = ("base", "seeds", "cell_seeds", "steps", "set", "grid", "record", "fit", "task",
             "analysis", "run")
_CELL_SEEDS = ("shared", "distinct")
_BASE_KEYS = ("table", "row", "quirks")
_RECORD_KEYS = ("layers", "trajectories", "every")
_FIT_KEYS = ("rates",)
_TASK_KEYS = ("name",)
_ANALYSIS_KEYS = ("names",)
_RUN_KEYS = ("chunk_size", "stop_loss")
# The grid axis that is no Setting field: the paper row within base.table.
ROW = "row"
_DEFAULT_TASK = "two_points"
_SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(Setting))
# Free text: it names a setting and changes nothing a sweep computes.
_NOT_A_GRID_AXIS = ("name",)
_FLOAT_FIELDS = tuple(f.name for f in dataclasses.fields(Setting)
                      if isinstance(f.default, float))
_DEFAULT_CHUNK = 64
DEFINITIONS = 2
"""The version of what a sweep's analyses compute from the same training, in the
canonical spec (and so in its hash) of every spec with analyses. 1 (no entry): the
``two_points`` task's fits used the nominal dx2, dy2 of the setting. 2: every fit uses
the pair's squared distances as ``train`` measures them, as the experiments do; results
differ from 1 by round-off (about 1e-5 relative in the rates), so a folder written under
1 is not resumed under 2."""
_MAX_ELEMENTS = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep spec (see :func:`parse_spec` for the TOML layout).

    Fields:
        table, row, quirks: the base setting, ``Setting.from_paper(table, row, quirks=quirks)``.
        overrides: ((field, value), ...) applied to the base (``[set]`` and top-level ``steps``).
        grid: ((key, (value, ...)), ...) in the spec's order; the cells are the product
            of the value lists, the first key varying slowest. A key "a+b" joins fields
            that vary together: its values are tuples (a value, b value). The key ``row``
            (no Setting field) varies the paper row within ``table``.
        seeds: the seeds every cell trains (distinct, non-negative).
        cell_seeds: ``"shared"`` (every cell trains ``seeds``) or ``"distinct"`` (cell c
            trains ``seeds[k] + c·(max(seeds) + 1)``: every element its own network, e.g.
            one seed per grid point with ``seeds = 1``); see :meth:`element_seeds`.
        layers: rsd hidden-layer indices recorded (None: the base row's ``Setting.layers``).
        trajectories: keep every element's full h, y, w and loss series (Zarr).
        fit_rates: fit (η_h, η_y) to every element (``"rates"`` in ``analyses``).
        chunk_size: elements per compiled chunk.
        record_every: record every k-th step (``train(record_every=k)``).
        stop_loss: None, or ``train(stop_loss=...)``: a seed stops at its first record
            whose loss is below it.
        task: the name of the task (a key of ``TASKS``) every cell trains on.
        analyses: names of the analyses (keys of ``ANALYSES``) run on every chunk, in order.
    """

    table: str
    row: str
    quirks: bool
    overrides: tuple[tuple[str, Any], ...]
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    layers: tuple[int, ...] | None
    trajectories: bool
    fit_rates: bool
    chunk_size: int
    record_every: int = 1
    stop_loss: float | None = None
    task: str = _DEFAULT_TASK
    analyses: tuple[str, ...] | None = None
    cell_seeds: str = "shared"

    def __post_init__(self):
        if self.analyses is None:  # the analyses of a spec written before they existed
            object.__setattr__(self, "analyses", _default_analyses(self.fit_rates))

    def canonical(self) -> dict:
        """The spec as plain JSON data (lists, not tuples; the grid as ordered pairs).

        An option added after the first sweeps (``record.every``, ``run.stop_loss``,
        ``task``, ``analysis``) appears only when it differs from its default, so a spec
        without it keeps its hash and its folders still resume. ``definitions``
        (:data:`DEFINITIONS`) appears when the spec has analyses: what they compute
        changed, so their folders from before do not resume."""
        record = {"layers": None if self.layers is None else list(self.layers),
                  "trajectories": self.trajectories}
        if self.record_every != 1:
            record["every"] = self.record_every
        run = {"chunk_size": self.chunk_size}
        if self.stop_loss is not None:
            run["stop_loss"] = self.stop_loss
        out = {
            "base": {"table": self.table, "row": self.row, "quirks": self.quirks},
            "set": {k: _jsonable(v) for k, v in self.overrides},
            "grid": [[k, [_jsonable(v) for v in values]] for k, values in self.grid],
            "seeds": list(self.seeds),
            "record": record,
            "fit": {"rates": self.fit_rates},
            "run": run,
        }
        if self.task != _DEFAULT_TASK:
            out["task"] = {"name": self.task}
        if self.analyses != _default_analyses(self.fit_rates):
            out["analysis"] = {"names": list(self.analyses)}
        if self.analyses:
            out["definitions"] = DEFINITIONS
        if self.cell_seeds != "shared":
            out["cell_seeds"] = self.cell_seeds
        return out

    def element_seeds(self, cells, seed_indices) -> np.ndarray:
        """The seeds (int64) of the elements (cell, k-th seed of ``seeds``), elementwise:
        ``seeds[k]``, plus ``cell · (max(seeds) + 1)`` when ``cell_seeds`` is "distinct"."""
        seeds = np.asarray(self.seeds, np.int64)[np.asarray(seed_indices, np.int64)]
        if self.cell_seeds == "distinct":
            seeds = seeds + np.asarray(cells, np.int64) * (max(self.seeds) + 1)
        return seeds

    @property
    def spec_hash(self) -> str:
        """sha256 (hex) of the canonical JSON (sorted keys, no spaces) of :meth:`canonical`."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def grid_keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.grid)

    @property
    def grid_fields(self) -> tuple[str, ...]:
        """The Setting fields (and ``row``) the grid varies (a key "a+b" varies a and b
        together)."""
        return tuple(f for k in self.grid_keys for f in k.split("+"))

    def cell_setting(self, values) -> Setting:
        """The setting of one cell given its ((field, value), ...) (:meth:`cell_values`):
        its paper row (the grid's ``row``, else ``base.row``) with ``[set]`` and the
        other values applied. Raises the ``Setting``'s ValueError for a refused value."""
        values = dict(values)
        row = values.pop(ROW, self.row)
        setting = Setting.from_paper(self.table, row, quirks=self.quirks)
        if self.overrides:
            setting = setting.replace(**dict(self.overrides))
        return setting.replace(**values) if values else setting

    def cell_values(self, combo) -> tuple[tuple[str, Any], ...]:
        """((field, value), ...) of one combination of the grid keys' values."""
        out = []
        for (key, _), value in zip(self.grid, combo):
            fields = key.split("+")
            out.extend(zip(fields, value if len(fields) > 1 else (value,)))
        return tuple(out)

    def base_setting(self) -> Setting:
        """The base row with the fixed overrides applied (validated)."""
        setting = Setting.from_paper(self.table, self.row, quirks=self.quirks)
        return setting.replace(**dict(self.overrides)) if self.overrides else setting


def load_spec(path) -> SweepSpec:
    """Read and validate the TOML sweep spec at ``path`` (see :func:`parse_spec`).

    Returns the :class:`SweepSpec`; a missing file, invalid TOML or an invalid spec
    raises ``ValueError`` naming the file or the key.

    Example:
        ```python
        from importlib.resources import files
        from rsd import sweeps

        spec = sweeps.load_spec(files("rsd.sweeps") / "examples" / "two_points.toml")
        print(sweeps.describe_plan(sweeps.make_plan(spec)))   # what --dry-run prints
        ```
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sweep spec {str(path)!r} is not a file.")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"sweep spec {str(path)!r} is not valid TOML: {error}") from None
    return parse_spec(data)


def parse_spec(data: dict) -> SweepSpec:
    """Validate a sweep spec given as the dict ``tomllib`` reads (layout: the commented
    example ``rsd/sweeps/examples/two_points.toml``); return the :class:`SweepSpec`.

    Raises ValueError naming the key for an unknown key at any level, a missing base,
    seeds that are not a count >= 1 or a list of distinct non-negative ints, an empty
    or repeated grid list, a grid or ``[set]`` key that is no ``Setting`` field (or a
    value the ``Setting`` refuses), a key given twice (``steps`` at the top and in
    ``[set]``, a grid key also in ``[set]``, ``layers`` in ``[record]`` and elsewhere),
    a grid ``row`` that is no row of ``base.table``, ``record.every`` not an integer
    >= 1, ``run.stop_loss`` not a finite number > 0, a ``task.name`` not in ``TASKS``,
    an ``analysis.names`` entry not in ``ANALYSES``, repeated or before an analysis it
    requires, or ``fit.rates`` contradicting ``analysis.names``.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a sweep spec must be a table of keys; got {type(data).__name__}.")
    _check_keys("the spec's top level", data, _TOP_KEYS)
    if "base" not in data:
        raise ValueError("spec key 'base' is missing: base = { table = \"2_points\", row = \"narrow\" }.")
    base = _table("base", data["base"])
    _check_keys("base", base, _BASE_KEYS)
    for key in ("table", "row"):
        if key not in base:
            raise ValueError(f"spec key 'base.{key}' is missing.")
    table, row = base["table"], base["row"]
    if not isinstance(table, str) or table not in PAPER_TABLES:
        raise ValueError(f"spec key 'base.table' must be one of {sorted(PAPER_TABLES)}; got {table!r}.")
    if not isinstance(row, str) or row not in PAPER_TABLES[table]:
        raise ValueError(f"spec key 'base.row' must be a row of table {table!r}: "
                         f"{sorted(PAPER_TABLES[table])}; got {row!r}.")
    quirks = _bool("base.quirks", base.get("quirks", False))
    try:
        base_setting = Setting.from_paper(table, row, quirks=quirks)
    except ValueError as error:
        raise ValueError(f"spec key 'base': {error}") from None

    overrides = dict(_table("set", data.get("set", {})))
    if "steps" in data:
        if "steps" in overrides:
            raise ValueError("spec key 'steps' is given twice (at the top level and in [set]); keep one.")
        overrides["steps"] = data["steps"]
    overrides = {k: _setting_value(f"set.{k}", k, v) for k, v in overrides.items()}
    if "name" in overrides and not isinstance(overrides["name"], str):
        raise ValueError("spec key 'set.name' must be a string.")
    for key, value in overrides.items():
        _check_field_value(f"set.{key}", base_setting, key, value)
    try:
        base_setting = base_setting.replace(**overrides)
    except ValueError as error:
        raise ValueError(f"spec table [set]: {error}") from None

    grid_table = _table("grid", data.get("grid", {}))
    grid_fields = [f for key in grid_table for f in str(key).split("+")]
    grid = []
    for key, values in grid_table.items():
        where = f"grid.{key}"
        fields = key.split("+")
        for field in fields:
            if field != ROW and (field not in _SETTING_FIELDS or field in _NOT_A_GRID_AXIS):
                allowed = [f for f in _SETTING_FIELDS if f not in _NOT_A_GRID_AXIS]
                raise ValueError(f"spec key '{where}' is not a Setting field that can vary (or "
                                 "fields joined by '+' that vary together); fields are "
                                 f"{', '.join(allowed)}, and {ROW} (the paper row).")
            if field in overrides:
                raise ValueError(f"spec key '{field}' is both in [set] and in [grid]; keep one.")
            if grid_fields.count(field) > 1:
                raise ValueError(f"spec key '{where}': field '{field}' appears in more than one "
                                 "grid key; keep one.")
        if not isinstance(values, list) or not values:
            raise ValueError(f"spec key '{where}' must be a non-empty list of values; got {values!r}.")
        if len(fields) > 1:
            for value in values:
                if not isinstance(value, list) or len(value) != len(fields):
                    raise ValueError(f"spec key '{where}' joins {len(fields)} fields: each value "
                                     f"must be a list of {len(fields)} values ({', '.join(fields)}); "
                                     f"got {value!r}.")
            values = tuple(tuple(_grid_value(where, f, v, table) for f, v in zip(fields, value))
                           for value in values)
        else:
            values = tuple(_grid_value(where, key, v, table) for v in values)
        seen = set()
        for value in values:
            parts = value if len(fields) > 1 else (value,)
            for field, part in zip(fields, parts):
                if field != ROW:
                    # With rows on the grid a value may suit some rows only: make_plan
                    # checks every cell.
                    _check_field_value(where, base_setting, field, part, grid_fields,
                                       lenient=ROW in grid_fields)
            if _hashable(value) in seen:
                raise ValueError(f"spec key '{where}' lists {value!r} twice; grid values must be distinct.")
            seen.add(_hashable(value))
        grid.append((key, values))

    seeds = _seeds(data.get("seeds", 1))
    cell_seeds = data.get("cell_seeds", "shared")
    if cell_seeds not in _CELL_SEEDS:
        raise ValueError(f"spec key 'cell_seeds' must be one of {', '.join(_CELL_SEEDS)}; "
                         f"got {cell_seeds!r}.")

    record = _table("record", data.get("record", {}))
    _check_keys("record", record, _RECORD_KEYS)
    layers = None
    if "layers" in record:
        if "layers" in overrides or "layers" in grid_fields:
            raise ValueError("spec key 'record.layers' is also given in [set] or [grid]; keep one.")
        layers = _setting_value("record.layers", "layers", record["layers"])
        _check_field_value("record.layers", base_setting, "layers", layers)
    trajectories = _bool("record.trajectories", record.get("trajectories", False))
    every = record.get("every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"spec key 'record.every' must be an integer >= 1; got {every!r}.")

    fit = _table("fit", data.get("fit", {}))
    _check_keys("fit", fit, _FIT_KEYS)
    analysis = _table("analysis", data.get("analysis", {}))
    _check_keys("analysis", analysis, _ANALYSIS_KEYS)
    fit_rates, analyses = _analyses(analysis, fit)

    task = _table("task", data.get("task", {}))
    _check_keys("task", task, _TASK_KEYS)
    task = task.get("name", _DEFAULT_TASK)
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"spec key 'task.name' must be a registered task: {', '.join(TASKS)} "
                         f"(rsd.sweeps.register_task); got {task!r}.")

    run = _table("run", data.get("run", {}))
    _check_keys("run", run, _RUN_KEYS)
    chunk_size = run.get("chunk_size", _DEFAULT_CHUNK)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"spec key 'run.chunk_size' must be an integer >= 1; got {chunk_size!r}.")
    stop_loss = _stop_loss(run.get("stop_loss"))

    cells = math.prod(len(v) for _, v in grid)
    if cells * len(seeds) > _MAX_ELEMENTS:
        raise ValueError(f"spec: {cells} cells × {len(seeds)} seeds exceeds {_MAX_ELEMENTS} elements; "
                         "split the sweep.")
    if cell_seeds == "distinct" and max(seeds) + (cells - 1) * (max(seeds) + 1) >= 2**32:
        raise ValueError(f"spec key 'cell_seeds': with \"distinct\", {cells} cells of seeds up to "
                         f"{max(seeds)} need seeds beyond 2**32 − 1; use smaller seeds.")
    return SweepSpec(table=table, row=row, quirks=quirks,
                     overrides=tuple(sorted(overrides.items())), grid=tuple(grid),
                     seeds=seeds, layers=layers, trajectories=trajectories,
                     fit_rates=fit_rates, chunk_size=chunk_size, record_every=every,
                     stop_loss=stop_loss, task=task, analyses=analyses, cell_seeds=cell_seeds)


def _check_keys(where, table, allowed):
    unknown = [k for k in table if k not in allowed]
    if unknown:
        prefix = "" if where == "the spec's top level" else f"{where}."
        raise ValueError(f"spec key '{prefix}{unknown[0]}' is unknown; allowed in {where}: "
                         f"{', '.join(allowed)}.")


def _table(where, value):
    if not isinstance(value, dict):
        raise ValueError(f"spec key '{where}' must be a table ([{where}] or {{ ... }}); got {value!r}.")
    return value


def _bool(where, value):
    if not isinstance(value, bool):
        raise ValueError(f"spec key '{where}' must be true or false; got {value!r}.")
    return value


def _seeds(value):
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= _MAX_ELEMENTS:
            raise ValueError(f"spec key 'seeds' must be a count >= 1 or a list of seeds; got {value}.")
        return tuple(range(value))
    if not isinstance(value, list) or not value:
        raise ValueError("spec key 'seeds' must be a count >= 1 or a non-empty list of seeds; "
                         f"got {value!r}.")
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
            raise ValueError(f"spec key 'seeds' must list integers in [0, 2**32); got {s!r}.")
    if len(set(value)) != len(value):
        raise ValueError("spec key 'seeds' lists a seed twice; seeds must be distinct.")
    return tuple(value)


def _setting_value(where, field, value):
    """A TOML value as the Setting field holds it: lists become tuples (``layers``), ints of
    float fields become floats (so a column has one type), anything else as given."""
    if field not in _SETTING_FIELDS:
        raise ValueError(f"spec key '{where}' is not a Setting field; fields are "
                         f"{', '.join(_SETTING_FIELDS)}.")
    if isinstance(value, list):
        value = tuple(value)
    if field in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, (dict, tuple)) and field != "layers":
        raise ValueError(f"spec key '{where}' must be a single value; got {value!r}.")
    return value


def _check_field_value(where, base, field, value, grid_keys=(), lenient=False):
    """The Setting's own check of one field, reported under the spec key. A refusal that
    names another grid key's field (e.g. a CNN's width against its depth) may hold for
    the base and not for some cells (or any refusal, ``lenient``: rows on the grid): the
    cells are checked one by one in ``make_plan``."""
    try:
        base.replace(**{field: value})
    except ValueError as error:
        if lenient or any(f"Setting.{k}" in str(error) for k in grid_keys if k != field):
            return
        raise ValueError(f"spec key '{where}': {error}") from None
    except (TypeError, OverflowError):
        raise ValueError(f"spec key '{where}': {value!r} is not a valid {field}.") from None


def _grid_value(where, field, value, table):
    """A grid value: a row of ``table`` for ``row``, else as :func:`_setting_value`."""
    if field != ROW:
        return _setting_value(where, field, value)
    if not isinstance(value, str) or value not in PAPER_TABLES[table]:
        raise ValueError(f"spec key '{where}': {value!r} is not a row of table {table!r}; "
                         f"rows are {', '.join(PAPER_TABLES[table])}.")
    return value


def _default_analyses(fit_rates):
    return ("rates",) if fit_rates else ()


def _analyses(analysis, fit):
    """The ``[analysis] names`` (default: ``["rates"]`` when ``[fit] rates``), checked
    against the registry, each after the analyses it requires."""
    fit_rates = _bool("fit.rates", fit.get("rates", True))
    if "names" not in analysis:
        return fit_rates, _default_analyses(fit_rates)
    names = analysis["names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"spec key 'analysis.names' must be a list of names; got {names!r}.")
    for k, name in enumerate(names):
        if name not in ANALYSES:
            raise ValueError(f"spec key 'analysis.names': {name!r} is not a registered analysis; "
                             f"registered: {', '.join(ANALYSES)} (rsd.sweeps.register_analysis).")
        if name in names[:k]:
            raise ValueError(f"spec key 'analysis.names' lists {name!r} twice.")
        missing = [r for r in ANALYSES[name].requires if r not in names[:k]]
        if missing:
            raise ValueError(f"spec key 'analysis.names': {name!r} needs {missing[0]!r} before it.")
    if "rates" in fit and fit_rates != ("rates" in names):
        raise ValueError(f"spec key 'fit.rates' = {str(fit_rates).lower()} contradicts "
                         f"'analysis.names' = {names!r}; keep one of them.")
    return "rates" in names, tuple(names)


def _stop_loss(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not value > 0:
        raise ValueError(f"spec key 'run.stop_loss' must be a finite number > 0; got {value!r}.")
    return float(value)


def _hashable(value):
    # 1 and 1.0 (or True and 1) would collide in a set; they cannot both occur after
    # _setting_value except in fields whose Setting check refuses one of them.
    return (type(value).__name__, value)


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value
