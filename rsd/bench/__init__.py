"""``rsd bench``: the benchmark suite as one call, one table, one JSON file.

Each row measures what rsd does and a named baseline in the same run, with the same
statistic on both sides (the best of ``repeats`` steady calls; compile time, first
call minus the best, is reported apart), and the ratio of the two rates. Training rows
also give the floor fraction: measured time per seed-step over the memory-traffic
floor 16·L·P² bytes / B, with B a copy bandwidth measured in the same run.

Rows (``ROWS``): ``theory``, ``train-default``, ``train-narrow``, ``fits``,
``compile-cache``, ``mnist-train``; see ``benchmarks/README.md`` for what each
compares. scipy (``rsd[bench]``) is needed for the theory and fit baselines; torch
for the training baselines (without it those columns say so).

    >>> from rsd import bench
    >>> results = bench.run(["theory"], quick=True, out="bench.json")  # doctest: +SKIP
    >>> print(bench.format_table(results))                              # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
import traceback

from ._core import format_table, load_average, machine_facts, memory_bandwidth, say, write_json
from ._rows import PROFILES, ROW_FUNCTIONS, need_scipy

__all__ = ["run", "ROWS", "PROFILES", "format_table", "memory_bandwidth"]

ROWS = tuple(ROW_FUNCTIONS)
"""The row names ``run`` accepts, in the order they run."""

_NEEDS_SCIPY = ("theory", "fits")


def run(rows=None, *, quick: bool = False, profile: str | None = None, repeats: int | None = None,
        out=None, progress: bool = True) -> list[dict]:
    """Run the benchmark rows and return one dict per table line.

    ``rows``: names from ``ROWS`` (default: all, in that order). ``quick``: the reduced
    sizes (a few minutes on a 2-core CPU); ``profile`` names a size profile of
    ``PROFILES`` explicitly ("full", "quick" or "tiny"; overrides ``quick``).
    ``repeats``: timings per side, the best kept (default: the profile's). ``out``: a
    path to write the results as JSON, with the machine facts and the load average at
    the start and the end. Progress lines go to stderr unless ``progress=False``.

    Each dict holds ``row``, ``what``, ``unit``, ``rsd_rate``, ``baseline``,
    ``baseline_rate``, ``ratio`` (= rsd_rate / baseline_rate), ``floor_fraction``,
    ``notes`` and ``details`` (the measured fields the rates come from). A row that
    fails is reported by an ``error`` entry and the suite goes on.
    """
    if rows is None:
        rows = list(ROWS)
    elif isinstance(rows, str):
        rows = [rows]
    else:
        rows = list(rows)
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        raise ValueError(f"rows must be a non-empty list of names from {list(ROWS)}; "
                         f"got {unknown or rows!r}.")
    if profile is None:
        profile = "quick" if quick else "full"
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}; got {profile!r}.")
    sizes = PROFILES[profile]
    if repeats is None:
        repeats = sizes["repeats"]
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer ≥ 1; got {repeats!r}.")
    if out is not None and (not isinstance(out, (str, os.PathLike)) or not os.fspath(out)
                            or os.path.isdir(out)):
        raise ValueError(f"out must be None or a file name (str or os.PathLike, not a folder); "
                         f"got {out!r:.80}.")
    if any(r in _NEEDS_SCIPY for r in rows):
        need_scipy()

    log = say if progress else (lambda message: None)
    facts = machine_facts()
    facts["load_average_start"] = load_average()
    bandwidth = memory_bandwidth()
    facts["bandwidth_bytes_per_s"] = bandwidth
    log(f"profile {profile}, best of {repeats}; copy bandwidth {bandwidth / 1e9:.1f} GB/s; "
        f"load {facts['load_average_start']}")
    results = []
    for name in rows:
        log(f"{name}: start")
        start = time.perf_counter()
        try:
            lines = ROW_FUNCTIONS[name](sizes, repeats, bandwidth)
        except ImportError:
            raise
        except Exception as error:  # one failed row does not lose the others
            lines = [dict(row=name, what="", unit="", rsd_rate=None, baseline="", baseline_rate=None,
                          ratio=None, floor_fraction=None, notes=f"failed: {error}",
                          error=traceback.format_exc(), details={})]
        wall = time.perf_counter() - start
        for line in lines:
            line["row_wall_seconds"] = wall
        results.extend(lines)
        log(f"{name}: done in {wall:.1f} s" + ("" if "error" not in lines[0] else " (FAILED)"))
    facts["load_average_end"] = load_average()
    if out is not None:
        path = write_json(out, dict(profile=profile, repeats=repeats, rows_requested=rows,
                                    machine=facts, results=results))
        log(f"wrote {path}")
    return results
