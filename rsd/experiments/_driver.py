"""Running experiments into an output folder: files, reuse, dependencies, the report.

``run_experiment`` writes ``OUT/NAME/`` (figures as PNG, ``result.npz``,
``metrics.json``, ``config.json``, ``summary.txt``, and ``results.parquet`` for an
experiment with a per-seed results table); ``reproduce`` runs several and
writes ``OUT/report.md`` and ``OUT/metrics.json``. Every folder and file appears
whole or not at all: work happens in a hidden ``.NAME.partial-PID`` folder that is
renamed into place when complete and removed if the run is interrupted. A finished
experiment whose ``config.json`` matches is reused unless ``force``.

Resuming: each experiment's units of work (a table row, a regime, …) are kept in
``OUT/NAME/sweep/`` (:class:`rsd.sweeps.UnitStore`) as they finish, so a killed run
restarts at its first unfinished unit and computes the same numbers; the units stay
with the finished result, so a rerun with one more row computes only that row. A unit
that is a sweep (a row of two-points, final-distance, depth; two-point-fit; atlas)
keeps its chunks in the unit's workspace; the experiments train a row's seeds in one
chunk (so that training equals ``train`` on those seeds bitwise), so for them the row
stays the unit of resumption.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ._claims import claims_metrics, claims_table, evaluate as evaluate_claims
from ._common import SIZES, apply_overrides, check_size

RESULTS_TABLE = "results.parquet"
"""The per-seed results table in ``OUT/NAME/`` of an experiment that defines
``table(result)``; an experiment that builds on it (``needs``) is given this table."""
SWEEP = "sweep"
"""The folder in ``OUT/NAME/`` that keeps an experiment's finished units (rows) for
resuming (:class:`rsd.sweeps.UnitStore`)."""

__all__ = ["Outcome", "prepare_output", "make_config", "run_experiment", "reproduce", "estimate_reproduction"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What :func:`run_experiment` did: the folder, the metrics, and whether it was reused."""

    name: str
    folder: Path
    size: str
    config: object
    metrics: dict
    figures: tuple[str, ...]
    reused: bool
    seconds: float
    summary: str = ""


def prepare_output(out) -> Path:
    """Create ``out`` (a folder) if needed and check it is writable; ValueError if not."""
    from ..sweeps import writable_folder

    return writable_folder(out, name="--out")


def make_config(name: str, *, size: str = "quick", overrides=(), seeds: int | None = None):
    """The experiment's configuration at ``size`` with ``--set``/``--seeds`` overrides applied."""
    module = _module(name)
    check_size(size)
    config = module.Config.for_size(size)
    if seeds is not None:
        if not any(f.name == "seeds" for f in dataclasses.fields(config)):
            raise ValueError(f"--seeds: experiment {name!r} has no seeds setting.")
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"--seeds must be an integer >= 1; got {seeds!r}.")
        config = dataclasses.replace(config, seeds=seeds)
    return apply_overrides(config, overrides)


def run_experiment(name: str, *, size: str = "quick", overrides=(), seeds: int | None = None,
                   out="rsd-out", force: bool = False, progress: bool = True, config=None,
                   log=None, devices=None, num_processes: int = 1, process_id: int = 0) -> Outcome:
    """Run experiment ``name`` into ``out/name/`` (or reuse a finished run of the same config).

    ``devices``: where the networks' seed axis is sharded (None: the default device;
    ``"all"``, an int n or a list of devices, as in :func:`rsd.training.train`); the
    results do not depend on it.

    ``num_processes``, ``process_id``: several processes (on one machine or several,
    sharing ``out`` on one file system) run the same command with their own id; the
    experiment's units of work (rows, regimes, …) are split round-robin among them
    (:class:`rsd.sweeps.UnitStore`). Process 0 writes the experiment's folder; the others
    wait for it and return its metrics. ``force`` needs one process."""
    log = log if log is not None else (lambda text: print(text, file=sys.stderr, flush=True))
    module = _module(name)
    from ..sweeps import UnitStore

    UnitStore.check_processes(num_processes, process_id, force)
    config = config if config is not None else make_config(name, size=size, overrides=overrides, seeds=seeds)
    out = prepare_output(out)
    folder = out / name
    record = _config_record(name, size, config)
    if not force:
        previous = _load_finished(folder, record)
        if previous is not None:
            log(f"{name}: reusing the finished run in {folder} (--force recomputes)")
            return _finished_outcome(name, folder, size, config, previous, reused=True)
    upstream = {}
    for need, need_config in getattr(module, "needs", lambda cfg: {})(config).items():
        previous = _load_finished(out / need, _config_record(need, size, need_config), any_size=True)
        table = _read_table(out / need) if previous is not None else None
        if table is not None:
            log(f"{name}: using the {need} results table in {out / need / RESULTS_TABLE}")
            upstream[need] = table
    from ..training import use_devices

    store = UnitStore(folder / SWEEP, key=_unit_key(record), force=force,
                      num_processes=num_processes, process_id=process_id)
    done = len(store.finished())
    share = f", process {process_id} of {num_processes}" if num_processes > 1 else ""
    log(f"{name}: running ({size}{share})"
        + (f", resuming: {done} finished units in {store.folder}" if done else ""))
    start = time.perf_counter()
    with use_devices(devices):
        result = module.run(config, upstream=upstream, progress=progress, store=store)
    seconds = time.perf_counter() - start
    if store.reused:
        log(f"{name}: {store.reused} units reused, {store.ran} computed")
    if process_id > 0:
        return _wait_for_leader(name, folder, size, config, record, log, store)
    metrics = {k: _number(v) for k, v in module.metrics(result).items()}
    partial = out / f".{name}.partial-{os.getpid()}"
    try:
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir()
        figures = module.plot(result)
        import matplotlib.pyplot as plt

        for fig_name, fig in figures.items():
            fig.savefig(partial / f"{fig_name}.png", dpi=110)
            plt.close(fig)
        np.savez_compressed(partial / "result.npz", **{k.replace("/", "__"): np.asarray(v)
                                                      for k, v in module.arrays(result).items()})
        summary = module.summary(result)
        (partial / "summary.txt").write_text(summary + "\n")
        _write_json(partial / "metrics.json", metrics)
        if hasattr(module, "table"):
            _write_table(partial / RESULTS_TABLE, module.table(result))
        _write_csv(partial / "metrics.csv", metrics)
        _write_json(partial / "config.json", {**record, "figures": list(figures), "seconds": seconds,
                                              "units": {"ran": store.ran, "reused": store.reused}})
        # The finished units stay with the result: a rerun with one more row computes that row
        # only. An experiment that stored none leaves no sweep folder.
        if store.ran or store.reused:
            (folder / SWEEP).rename(partial / SWEEP)
        else:
            shutil.rmtree(folder / SWEEP, ignore_errors=True)
        _replace_folder(partial, folder)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return Outcome(name, folder, size, config, metrics, tuple(figures), False, seconds, summary)


def reproduce(names=None, *, size: str = "quick", out="rsd-out", force: bool = False,
              progress: bool = True, overrides=(), log=None, header: str = "",
              devices=None, num_processes: int = 1, process_id: int = 0) -> tuple[Path, dict]:
    """Run the experiments ``names`` (default: every reproduction) and write the report.

    The report opens with the paper's claims, each decided from the metrics
    (:mod:`rsd.experiments._claims`); ``metrics.json`` holds every experiment's metrics
    and ``"claims": {"claims/<n>": 1 or 0}``. ``header``: Markdown placed under the
    title (e.g. the command and the machine). ``num_processes``, ``process_id``: as in
    :func:`run_experiment`; process 0 writes the report. Returns (path of ``report.md``,
    {experiment: metrics}).
    """
    configs = _configs(names, size, overrides)
    names = list(configs)
    from ..sweeps import UnitStore

    UnitStore.check_processes(num_processes, process_id, force)
    out = prepare_output(out)
    outcomes = [run_experiment(name, size=size, out=out, force=force, progress=progress,
                               config=configs[name], log=log, devices=devices,
                               num_processes=num_processes, process_id=process_id) for name in names]
    all_metrics = {o.name: o.metrics for o in outcomes}
    verdicts = evaluate_claims(all_metrics)
    all_metrics["claims"] = claims_metrics(verdicts)
    if process_id > 0:
        return out / "report.md", all_metrics
    _write_json(out / "metrics.json", all_metrics, atomic=True)
    report = out / "report.md"
    from ..sweeps import write_atomic

    write_atomic(report, _report(outcomes, size, verdicts, header=header))
    return report, all_metrics


def estimate_reproduction(names=None, *, size: str = "quick", overrides=(), bandwidth: float = 1e10):
    """What ``reproduce`` would cost, without training: (the dry run's text, [Estimate]).

    Per experiment the networks, steps, memory of one chunk and time, on this machine
    (its memory bandwidth measured now) and at the memory floor of ``bandwidth`` bytes/s
    (see :mod:`rsd.experiments._estimate`). An upstream result an experiment needs
    (final-distance's and xor's two-points rates) is counted where no experiment of this
    run provides it.
    """
    from . import REGISTRY
    from ._estimate import describe_estimates, estimate
    from ..bench import memory_bandwidth

    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0 \
            or not np.isfinite(bandwidth):
        raise ValueError(f"--bandwidth must be a positive number of bytes/s; got {bandwidth!r}.")
    configs = _configs(names, size, overrides)
    names = list(configs)
    here = memory_bandwidth(megabytes=256, repeats=3)
    estimates = []
    for name in names:
        module = REGISTRY[name]
        work = list(module.workloads(configs[name]))
        for need, need_config in getattr(module, "needs", lambda cfg: {})(configs[name]).items():
            provided = need in configs and _serves(_config_record(need, size, configs[need])["config"],
                                                   _config_record(need, size, need_config)["config"])
            if not provided:
                work += REGISTRY[need].workloads(need_config)
        estimates.append(estimate(name, work, bandwidth_here=here, bandwidth=float(bandwidth)))
    return describe_estimates(estimates, size=size, bandwidth_here=here, bandwidth=float(bandwidth)), estimates


# --------------------------------------------------------------------------- internals


def _configs(names, size, overrides) -> dict:
    """{name: config} of the experiments ``names`` (default: every reproduction), checked,
    in registry order (a dependency before its users: final-distance reuses two-points)."""
    from . import REGISTRY, REPRODUCE

    check_size(size)
    names = list(REPRODUCE) if not names else list(names)
    for name in names:
        _module(name)
    names.sort(key=lambda n: list(REGISTRY).index(n))
    return {name: make_config(name, size=size, overrides=overrides) for name in names}


def _wait_for_leader(name, folder, size, config, record, log, store) -> Outcome:
    """A process other than 0: wait until process 0 has written the experiment's folder
    (its config.json matches), so that the next experiment finds the same upstream
    tables in every process; return that folder's outcome. ``TimeoutError`` if process 0
    is lost meanwhile (``store``'s heartbeat watch, :meth:`rsd.sweeps.UnitStore.wait`)."""
    log(f"{name}: waiting for process 0 to write {folder}")
    found = {}

    def written():
        found["previous"] = _load_finished(folder, record)
        return found["previous"] is not None

    store.wait(written, f"process 0 to write {folder}", owner=0)
    return _finished_outcome(name, folder, size, config, found["previous"], reused=False)


def _finished_outcome(name, folder, size, config, previous, *, reused: bool) -> Outcome:
    """The :class:`Outcome` of a finished folder (``previous``: :func:`_load_finished`)."""
    try:
        text = (folder / "summary.txt").read_text().rstrip()
    except OSError:
        text = ""
    return Outcome(name, folder, size, config, previous["metrics"], tuple(previous["figures"]),
                   reused, previous["seconds"], text)


def _module(name):
    from . import REGISTRY

    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def _unit_key(record: dict) -> dict:
    """What an experiment's units belong to: its name and configuration but for the rows
    (or regimes) it runs, since each row is computed on its own (see ``_serves``)."""
    config = {k: v for k, v in record["config"].items() if k not in ("rows", "regimes")}
    return {"experiment": record["experiment"], "config": config}


def _config_record(name, size, config) -> dict:
    return {"experiment": name, "size": size, "config": json.loads(json.dumps(dataclasses.asdict(config)))}


def _load_finished(folder: Path, record: dict, any_size: bool = False):
    try:
        stored = json.loads((folder / "config.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if stored.get("experiment") != record["experiment"]:
        return None
    if any_size:  # an upstream result: one with more rows serves as well
        same = _serves(stored.get("config"), record["config"])
    else:
        same = stored.get("config") == record["config"] and stored.get("size") == record["size"]
    if not same:
        return None
    seconds = stored.get("seconds")
    return {"metrics": metrics, "figures": stored.get("figures", []),
            "seconds": float(seconds) if isinstance(seconds, (int, float)) else float("nan")}


def _serves(stored: dict | None, needed: dict) -> bool:
    """Whether a finished run of config ``stored`` has what config ``needed`` asks for:
    the same config, except that its ``rows`` may be a superset (every row is computed
    on its own, so a row's metrics do not depend on which other rows ran)."""
    if not isinstance(stored, dict):
        return False
    if "rows" in stored and "rows" in needed:
        if not set(needed["rows"]) <= set(stored["rows"]):
            return False
        stored, needed = ({k: v for k, v in d.items() if k != "rows"} for d in (stored, needed))
    return stored == needed


def _replace_folder(new: Path, target: Path):
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(target)


def _number(value):
    value = float(value) if not isinstance(value, (int, np.integer)) else int(value)
    return value


def _write_json(path: Path, data, atomic: bool = False):
    text = json.dumps(data, indent=1, sort_keys=False, allow_nan=True)
    if atomic:
        from ..sweeps import write_atomic

        write_atomic(path, text)
    else:
        path.write_text(text)


def _write_table(path: Path, columns: dict):
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {k: pa.array(v.tolist() if v.dtype == object else v) for k, v in
              ((k, np.asarray(v)) for k, v in columns.items())}
    pq.write_table(pa.table(arrays), path)


def _read_table(folder: Path):
    """``folder/results.parquet`` as a ``pyarrow.Table``, or None if there is none (a
    folder written before the table existed) or it cannot be read."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(folder / RESULTS_TABLE)
    except (OSError, ValueError):
        return None


def _write_csv(path: Path, metrics: dict):
    """Every metric as ``group,name,value`` rows (group empty for plain names)."""
    rows = ["group,metric,value"]
    for key, value in metrics.items():
        group, name = key.rsplit("/", 1) if "/" in key else ("", key)
        rows.append(f"{group},{name},{value!r}")
    path.write_text("\n".join(rows) + "\n")


def _report(outcomes, size, verdicts=(), header: str = "") -> str:
    from . import REGISTRY

    lines = ["# rsd reproduction report", ""]
    if header:
        lines += [header.strip(), ""]
    lines += [f"Size: **{size}** ({_SIZE_TEXT[size]}).", ""]
    if verdicts:
        held = sum(v.holds is True for v in verdicts)
        ran = sum(v.holds is not None for v in verdicts)
        lines += ["## The paper's claims", "",
                  f"{held} of the {ran} claims tested hold at this size. Each row: the claim, the "
                  "metric that tests it, the criterion, this run's values, the verdict. A claim "
                  "that does not hold is a result, with its evidence; the sections below give every "
                  "protocol, its deviations from the reference, and the figures.", ""]
        lines += claims_table(verdicts)
        lines.append("")
    lines += ["Each section below: what was run, the figures, and the metrics that carry the claims "
              "(with the reference's value where the reference publishes one; otherwise the "
              "comparison is with the paper's figure). Every metric is in `metrics.json` and in "
              "`NAME/metrics.csv`.", ""]
    for o in outcomes:
        module = REGISTRY[o.name]
        doc = module.__doc__.strip().split("\n\n")
        lines += [f"## {o.name}", "", doc[0].replace("\n", " "), ""]
        if len(doc) > 1:
            lines += [" ".join(doc[1].split()), ""]
        lines += [f"Run: {module.describe(o.config)}", ""]
        lines += [f"{_took(o)} Files: `{o.name}/`.", ""]
        for fig in o.figures:
            lines += [f"![{o.name} {fig}]({o.name}/{fig}.png)", ""]
        reference = getattr(module, "reference_metrics", lambda config: {})(o.config)
        lines += _metric_tables(o.metrics, reference, getattr(module, "REPORT_METRICS", None))
        lines.append("")
    return "\n".join(lines)


def _took(o) -> str:
    if not o.reused:
        return f"Took {o.seconds:.0f} s."
    if math.isfinite(o.seconds):
        return f"Reused from an earlier run, which took {o.seconds:.0f} s."
    return "Reused from an earlier run."


def _metric_tables(metrics: dict, reference: dict, shown=None) -> list[str]:
    """Markdown tables of the metrics: keys "group/name" pivot into one table (a line per
    group when the groups are table rows, a line per name otherwise); the rest are listed.
    ``shown``: the metric names to show (matched against a key's first or last part);
    None shows all."""
    if shown is not None:
        metrics = {k: v for k, v in metrics.items() if k.split("/", 1)[0] in shown or k.rsplit("/", 1)[-1] in shown}
    plain = {k: v for k, v in metrics.items() if "/" not in k}
    grouped: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if "/" in key:
            group, name = key.split("/", 1)
            grouped.setdefault(group, {})[name] = value
    lines = []
    if plain:
        lines += ["| metric | rsd | reference |", "|---|---|---|"]
        for key, value in plain.items():
            ref = reference.get(key)
            lines.append(f"| `{key}` | {_fmt(value)} | {_fmt(ref) if ref is not None else 'qualitative'} |")
        lines.append("")
    if grouped:
        groups = list(grouped)
        names = list(dict.fromkeys(n for g in groups for n in grouped[g]))
        from ..training import paper_names

        by_row = all(g in paper_names("2_points") for g in groups)
        lines_key, cols_key = (groups, names) if by_row else (names, groups)
        get = (lambda r, c: grouped[r].get(c)) if by_row else (lambda r, c: grouped[c].get(r))
        ref_cols = [c for c in cols_key if any(f"{c}/{r}" in reference for r in lines_key)]
        header = ["row" if by_row else "", *cols_key, *(f"{c} (reference)" for c in ref_cols)]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in lines_key:
            cells = [_fmt(get(r, c)) if get(r, c) is not None else "" for c in cols_key]
            refs = [_fmt(reference[f"{c}/{r}"]) if f"{c}/{r}" in reference else "" for c in ref_cols]
            lines.append("| " + " | ".join([f"`{r}`", *cells, *refs]) + " |")
        if not reference:
            lines += ["", "The reference publishes no numbers for these: the comparison is with the "
                      "paper's figure (qualitative)."]
        lines.append("")
    return lines


_SIZE_TEXT = {
    "tiny": "seconds-long smoke sizes for tests and notebooks; the numbers mean little",
    "quick": "reduced widths and seed counts for a 2-core CPU; the protocols are the reference's",
    "cpu": "the reference protocol's widths, depths, learning rates and step counts with fewer seeds "
           "(and fewer final-distance rows), for a 2-core CPU",
    "paper": "the reference protocol's sizes",
}


def _fmt(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is None or not np.isfinite(value):
        return str(value)
    return f"{value:.4g}"


assert set(_SIZE_TEXT) == set(SIZES)
