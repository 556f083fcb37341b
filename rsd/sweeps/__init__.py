"""Sweeps: grids of settings × seeds, trained and fitted in compiled chunks, sharded over
devices and processes, stored as Parquet (and Zarr) and resumable after any kill.

``load_spec(path)`` reads a TOML spec (:class:`SweepSpec`), ``make_plan`` expands it into
cells, compiled groups and chunks (``describe_plan`` prints them), ``run_sweep`` runs it
into a folder and ``read_results`` reads the folder's table. ``rsd sweep SPEC --out DIR``
is the same from the command line; ``examples/two_points.toml`` is a spec to start from.
What the cells train on and what each chunk computes are plug-ins: ``[task] name``
names a task of ``TASKS`` (``register_task`` adds one), ``[analysis] names`` analyses of
``ANALYSES`` (``register_analysis``); ``load_plugins`` imports the files or modules that
register them (``rsd sweep --plugins``).
``UnitStore`` keeps the finished units (rows) of any other piece of work, so that the
experiments of ``rsd run`` resume after a kill as sweeps do.
"""

from ._plan import (
    ASSUMED_BANDWIDTH,
    DATA_FIELDS,
    Cell,
    Chunk,
    ChunkEstimate,
    Group,
    Plan,
    describe_plan,
    estimate_chunk,
    make_plan,
)
from ._plugins import (
    ANALYSES,
    RATE_COLUMNS,
    TASKS,
    Analysis,
    ChunkRecords,
    TaskData,
    load_plugins,
    rates_analysis,
    register_analysis,
    register_task,
)
from ._run import FIT_SKIPPED, SweepReport, init_distributed, result_schema, run_chunk, run_sweep
from ._spec import DEFINITIONS, SweepSpec, load_spec, parse_spec
from ._store import MANIFEST, RESULTS, TRAJECTORIES, read_manifest, read_results
from ._units import UnitStore, run_unit, writable_folder, write_atomic

__all__ = [
    "SweepSpec",
    "load_spec",
    "parse_spec",
    "DEFINITIONS",
    "Plan",
    "Cell",
    "Group",
    "Chunk",
    "ChunkEstimate",
    "make_plan",
    "describe_plan",
    "estimate_chunk",
    "run_sweep",
    "run_chunk",
    "init_distributed",
    "SweepReport",
    "result_schema",
    "read_results",
    "read_manifest",
    "DATA_FIELDS",
    "ASSUMED_BANDWIDTH",
    "FIT_SKIPPED",
    "MANIFEST",
    "RESULTS",
    "TRAJECTORIES",
    "TASKS",
    "TaskData",
    "register_task",
    "ANALYSES",
    "Analysis",
    "ChunkRecords",
    "register_analysis",
    "load_plugins",
    "RATE_COLUMNS",
    "rates_analysis",
    "UnitStore",
    "run_unit",
    "write_atomic",
    "writable_folder",
]
