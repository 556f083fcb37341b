"""A sweep's folder: manifest, one Parquet part per chunk, optional Zarr trajectories.

Layout of ``DIR``:

* ``manifest.json``: the canonical spec, its ``spec_hash``, the versions of rsd, jax and
  jaxlib, the plan's size and ``finished_chunks``; always replaced atomically.
* ``results.parquet/``: a dataset folder, one ``part-<chunk:06d>.parquet`` per finished
  chunk (``pyarrow.parquet.read_table`` reads the folder in one call; :func:`read_results`
  sorts it by cell and seed).
* ``trajectories.zarr/`` (when the spec records trajectories): arrays ``h`` [E, T, K],
  ``y``, ``w``, ``loss`` [E, T] indexed by element id (cell-major, then seed), and
  ``cell``, ``seed`` [E].

Crash safety: a part is written under a hidden temporary name (pyarrow skips names
starting with "."), flushed to disk and renamed into place; a chunk is finished iff its
part exists. The manifest's list is refreshed from the parts (under ``fcntl.flock`` on
``DIR/.lock``), so a kill between the rename and the manifest update loses nothing and
duplicates nothing. A chunk's trajectories are written before its part is renamed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

__all__ = ["read_results", "read_manifest", "MANIFEST", "RESULTS", "TRAJECTORIES"]

MANIFEST = "manifest.json"
"""Name of the sweep folder's manifest: the canonical spec, its hash, the versions and
the finished chunks (JSON)."""
RESULTS = "results.parquet"
"""Name of the sweep folder's Parquet dataset folder, one ``part-<chunk>.parquet`` per
finished chunk (read it with :func:`read_results`)."""
TRAJECTORIES = "trajectories.zarr"
"""Name of the sweep folder's Zarr store of full h, y, w and loss series (only with
``[record] trajectories = true``)."""
LOCK = ".lock"
FORMAT = 1
_PART = re.compile(r"^part-(\d{6,})\.parquet$")


def part_name(chunk: int) -> str:
    return f"part-{chunk:06d}.parquet"


def read_manifest(out) -> dict | None:
    """The manifest of the sweep in ``out`` (None when there is none).

    Args:
        out: the sweep's folder.

    Returns:
        The parsed ``manifest.json``: the canonical spec, its ``spec_hash``, the versions
        of rsd, jax and jaxlib, the plan's size and the finished chunks; None when the
        folder holds no manifest. A manifest that is not valid JSON raises ``ValueError``.
    """
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{path} is not a sweep manifest (not valid JSON); use --force to start over.") \
            from None


def read_results(out):
    """Every finished row of the sweep in ``out`` as one ``pyarrow.Table``, sorted by
    (cell, seed). Raises ValueError when ``out`` holds no finished chunk yet.

    The columns are those of :func:`result_schema`; ``.to_pandas()`` gives a DataFrame.
    Rows of chunks still running or never run are simply absent.
    """
    import pyarrow.parquet as pq

    folder = Path(out) / RESULTS
    if not folder.is_dir() or not finished_chunks(out):
        raise ValueError(f"{Path(out)} holds no finished sweep chunk (no {RESULTS}/part-*.parquet).")
    table = pq.read_table(folder)
    return table.sort_by([("cell", "ascending"), ("seed", "ascending")])


def finished_chunks(out) -> list[int]:
    """Chunk ids whose part file exists (sorted)."""
    folder = Path(out) / RESULTS
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for m in map(_PART.match, os.listdir(folder)) if m)


def check_existing(out, spec_hash: str, *, force: bool, canonical: dict | None = None) -> None:
    """Refuse a folder that holds a different sweep (unless ``force``); read-only.
    ``canonical`` (the spec's :meth:`~SweepSpec.canonical`) names the reason when the
    folder holds the same spec under older definitions."""
    manifest = read_manifest(out)
    if manifest is None:
        if not force and (Path(out) / RESULTS).exists():
            raise ValueError(f"{out} holds sweep results without a manifest; use --force to start over.")
        return
    if not force and manifest.get("spec_hash") != spec_hash:
        theirs = str(manifest.get("spec_hash"))[:12]
        if _older_definitions(manifest.get("spec"), canonical):
            raise ValueError(
                f"{out} holds this sweep as an older rsd computed it (definitions "
                f"{manifest['spec'].get('definitions', 1)}, now {canonical['definitions']}: "
                "two-point fits now use the measured pair distances, which moves the rates "
                "by round-off); its results cannot be mixed with new ones: use --force to "
                "start over, or another folder.")
        raise ValueError(f"{out} holds a different sweep (spec hash {theirs}…, this spec "
                         f"{spec_hash[:12]}…); use --force to start over.")


def _older_definitions(theirs, ours) -> bool:
    """Whether the folder's canonical spec is ours but for an older ``definitions``."""
    if not isinstance(theirs, dict) or ours is None or "definitions" not in ours:
        return False
    strip = lambda spec: {k: v for k, v in spec.items() if k != "definitions"}
    return strip(theirs) == strip(ours) and theirs.get("definitions", 1) < ours["definitions"]


def prepare(out, plan, *, force: bool, versions: dict, dtype) -> None:
    """Make ``out`` ready for ``plan``: with ``force`` delete the sweep's files (manifest,
    results, trajectories; nothing else), remove leftover temporary files, write the
    manifest and create the trajectory arrays. Run by one process only."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        if force:
            for name in (RESULTS, TRAJECTORIES):
                if (out / name).is_dir():
                    shutil.rmtree(out / name)
            (out / MANIFEST).unlink(missing_ok=True)
        (out / RESULTS).mkdir(exist_ok=True)
        for folder in (out, out / RESULTS):
            for name in os.listdir(folder):
                if name.startswith(".") and name.endswith(".tmp"):
                    (folder / name).unlink(missing_ok=True)
        if plan.spec.trajectories:
            _create_trajectories(out / TRAJECTORIES, plan, dtype)
        manifest = {
            "format": FORMAT,
            "spec": plan.spec.canonical(),
            "spec_hash": plan.spec.spec_hash,
            "versions": versions,
            "plan": {"cells": len(plan.cells), "seeds": plan.num_seeds,
                     "elements": plan.num_elements, "groups": len(plan.groups),
                     "chunks": len(plan.chunks), "chunk_size": plan.spec.chunk_size},
            "finished_chunks": finished_chunks(out),
        }
        _write_json(out / MANIFEST, manifest)


def write_part(out, chunk: int, table) -> None:
    """Write one chunk's rows atomically as ``results.parquet/part-<chunk>.parquet``, then
    add the chunk to the manifest."""
    import pyarrow.parquet as pq

    folder = Path(out) / RESULTS
    tmp = folder / f".part-{chunk:06d}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        pq.write_table(table, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / part_name(chunk))
    _fsync_dir(folder)
    update_manifest(out)


def update_manifest(out) -> None:
    """Refresh the manifest's ``finished_chunks`` from the part files (under the lock)."""
    out = Path(out)
    with _locked(out):
        manifest = read_manifest(out)
        manifest["finished_chunks"] = finished_chunks(out)
        _write_json(out / MANIFEST, manifest)


def write_trajectories(out, elements, series: dict) -> None:
    """Write the series of ``elements`` (ascending element ids) into trajectories.zarr:
    ``series`` maps "h" [E, T, K], "y", "w", "loss" [E, T] (T, K at most the arrays')."""
    import zarr

    group = zarr.open_group(str(Path(out) / TRAJECTORIES), mode="r+")
    elements = np.asarray(elements)
    # contiguous runs of element ids, each written as one slice
    breaks = np.flatnonzero(np.diff(elements) != 1) + 1
    for run in np.split(np.arange(elements.size), breaks):
        lo, hi = int(elements[run[0]]), int(elements[run[-1]]) + 1
        for name, values in series.items():
            array = group[name]
            block = np.full((hi - lo,) + array.shape[1:], np.nan, array.dtype)
            values = np.asarray(values)[run]
            block[(slice(None),) + tuple(slice(0, n) for n in values.shape[1:])] = values
            array[lo:hi] = block


def _create_trajectories(path, plan, dtype):
    import zarr

    every = plan.spec.record_every
    e, t, k = plan.num_elements, -(-plan.max_steps // every), plan.max_layers
    rows = plan.trajectory_chunk_len()
    group = zarr.open_group(str(path), mode="a")
    shapes = {"h": (e, t, k), "y": (e, t), "w": (e, t), "loss": (e, t)}
    for name, shape in shapes.items():
        if name not in group:
            group.create_array(name, shape=shape, chunks=(rows,) + shape[1:], dtype=dtype,
                               fill_value=np.nan)
    if "cell" not in group:
        ids = np.arange(e)
        cell, k_seed = np.divmod(ids, plan.num_seeds)
        for name, values in (("cell", cell), ("seed", plan.spec.element_seeds(cell, k_seed))):
            group.create_array(name, shape=(e,), chunks=(max(1, min(e, 1 << 16)),), dtype="int64")
            group[name][:] = values
    group.attrs.update({
        "element_order": "element = cell * num_seeds + seed_index (cell-major, then seed)",
        "num_seeds": plan.num_seeds,
        "layers": ("per cell: the results' layers column" if "layers" in plan.spec.grid_fields
                   else None if plan.layers is None else list(plan.layers)),
        "padding": "NaN beyond an element's own steps (T) and layers (K)",
        "record": "h[e, t, k]: record before update t at hidden layer layers[k]" if every == 1 else
                  f"h[e, t, k]: record before update {every}·t at hidden layer layers[k]",
    })
    if every != 1:  # written only then, so that the files of a spec without it stay as they were
        group.attrs["record_every"] = every


@contextlib.contextmanager
def _locked(out):
    with open(Path(out) / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_atomic(path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` whole or not at all: a hidden temporary file in the same
    folder, flushed to disk and renamed over ``path``."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _write_json(path, data):
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
