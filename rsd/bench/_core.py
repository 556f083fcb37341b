"""Timing, machine facts, the table and the JSON of ``rsd bench``.

Every rate in the suite is a best of ``repeats`` steady calls, on rsd's side and on the
baseline's alike; the first call of a compiled program is timed apart, and its excess
over the best steady call is reported as compile time.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

# The table's columns: (JSON key, header).
COLUMNS = (
    ("row", "row"),
    ("what", "what rsd did"),
    ("rsd_rate", "rsd rate (unit)"),
    ("baseline", "baseline (named)"),
    ("baseline_rate", "baseline rate"),
    ("ratio", "ratio"),
    ("floor_fraction", "floor fraction"),
    ("notes", "notes"),
)


def timed(fn, *, block: bool = True) -> tuple[float, object]:
    """(wall seconds, result) of one call of ``fn``; a JAX result is waited for
    (``block``) before the clock stops."""
    start = time.perf_counter()
    out = fn()
    if block:
        import jax

        out = jax.block_until_ready(out)
    return time.perf_counter() - start, out


def first_and_best(fn, repeats: int) -> tuple[float, float, object]:
    """(first call seconds, best of ``repeats`` later calls, last result).

    The first call includes compilation; ``first − best`` estimates the compile time."""
    first, out = timed(fn)
    best = math.inf
    for _ in range(repeats):
        seconds, out = timed(fn)
        best = min(best, seconds)
    return first, best, out


def best_of(fn, repeats: int) -> tuple[float, object]:
    """(best of ``repeats`` calls in seconds, last result), no warm-up call: for
    baselines that compile nothing (scipy, one trajectory at a time)."""
    best, out = math.inf, None
    for _ in range(repeats):
        seconds, out = timed(fn, block=False)
        best = min(best, seconds)
    return best, out


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Copy bandwidth B in bytes/s: bytes read plus written by the best of ``repeats``
    copies of a ``megabytes`` float32 array (numpy, one core)."""
    n = megabytes * 2**20 // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages before timing
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages, or None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_facts() -> dict:
    """What the numbers depend on: versions, platform, device, CPUs, date (UTC)."""
    import jax

    device = jax.devices()[0]
    facts = dict(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        jax=jax.__version__, python=sys.version.split()[0], numpy=np.__version__,
        platform=platform.platform(), machine=platform.machine(),
        backend=jax.default_backend(), device_kind=getattr(device, "device_kind", str(device)),
        device_count=jax.device_count(), cpu_count=os.cpu_count(),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        compilation_cache_dir=jax.config.jax_compilation_cache_dir or None,
    )
    for name in ("scipy", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            facts[name] = module.__version__
    return facts


def result(row: str, what: str, unit: str, rsd_rate: float, baseline: str,
           baseline_rate: float | None, *, floor_fraction: float | None = None,
           notes: str = "", **details) -> dict:
    """One line of the table as a dict; ``ratio`` = rsd_rate / baseline_rate (None
    without a baseline). ``details`` hold the measured fields the rates come from."""
    ratio = None if baseline_rate is None or baseline_rate <= 0 else rsd_rate / baseline_rate
    return dict(row=row, what=what, unit=unit, rsd_rate=float(rsd_rate), baseline=baseline,
                baseline_rate=None if baseline_rate is None else float(baseline_rate),
                ratio=ratio, floor_fraction=None if floor_fraction is None else float(floor_fraction),
                notes=notes, details=_plain(details))


def _plain(value):
    """``value`` with numpy scalars and arrays made JSON-serializable (nan → None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2e}"


def _cells(res: dict) -> list[str]:
    rate = "—" if res["rsd_rate"] is None else f"{_number(res['rsd_rate'])} {res['unit']}"
    base = "—" if res["baseline_rate"] is None else f"{_number(res['baseline_rate'])}"
    ratio = "—" if res["ratio"] is None else f"{res['ratio']:.3g}×"
    floor = "—" if res["floor_fraction"] is None else f"{res['floor_fraction']:.2f}"
    return [res["row"], res["what"], rate, res["baseline"], base, ratio, floor, res["notes"]]


def format_table(results: list[dict]) -> str:
    """The results as one Markdown table (the columns of ``COLUMNS``).

    Args:
        results: the list of row dicts that :func:`rsd.bench.run` returns.

    Returns:
        The table as text, one line per result, as ``rsd bench`` prints it.
    """
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for res in results:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in _cells(res)) + " |")
    return "\n".join(lines)


def write_json(path, payload: dict) -> Path:
    """Write ``payload`` to ``path`` (folders created; replaced atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_plain(payload), indent=2))
    os.replace(tmp, path)
    return path


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"[rsd bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
