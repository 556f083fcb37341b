"""What every experiment shares: sizes, configs from the command line, statistics.

An experiment module has ``Config`` (a frozen dataclass with ``for_size(size)``),
``run(config, *, upstream=None, progress=False, store=None) -> result`` (``store``: the
:class:`rsd.sweeps.UnitStore` its units of work are kept in, or None), ``plot(result) ->
{name: figure}``, ``metrics(result) -> {name: float}``, ``arrays(result) -> {name:
array}`` (saved as ``result.npz``) and ``summary(result) -> str``. The driver in
:mod:`rsd.experiments._driver` runs them, writes their files and the report.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy as np

from ..networks import cnn_min_width
from ..fitting import NOT_FITTED, fit_rates_masked

__all__ = [
    "SIZES",
    "apply_overrides",
    "check_size",
    "progress_bar",
    "pearson_r",
    "median_or_nan",
    "paper_row",
]

SIZES = ("tiny", "quick", "cpu", "paper")
"""tiny: seconds, for tests and notebooks in CI; quick: minutes on a 2-core CPU (the
default); cpu: the reference protocol's widths, depths, learning rates and step counts
with fewer seeds (and fewer final-distance rows), about 100 minutes on a 2-core CPU;
paper: the reference protocol's sizes (meant for an accelerator)."""


def check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}; got {size!r}.")
    return size


def apply_overrides(config, overrides: dict[str, str] | list[str] | tuple[str, ...]):
    """``config`` with fields replaced by ``key=value`` strings (``--set``), parsed by type.

    Unknown keys and unparsable values raise ``ValueError`` naming the key; the
    config's own checks then validate the values.
    """
    if isinstance(overrides, (list, tuple)):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"--set takes key=value; got {item!r}.")
            key, value = item.split("=", 1)
            pairs[key.strip()] = value.strip()
        overrides = pairs
    if not overrides:
        return config
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, text in overrides.items():
        if key not in names:
            raise ValueError(f"unknown setting {key!r} for this experiment; allowed: {', '.join(names)}.")
        changes[key] = _parse(key, text, hints[key])
    return dataclasses.replace(config, **changes)


def _parse(key, text, hint):
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional and text.lower() in ("none", "null", ""):
        return None
    base = next((a for a in args if a is not type(None)), hint) if args and typing.get_origin(hint) is not tuple else hint
    try:
        if typing.get_origin(base) is tuple:
            inner = typing.get_args(base)[0]
            return tuple(_scalar(inner, part.strip()) for part in text.split(",") if part.strip())
        return _scalar(base, text)
    except (TypeError, ValueError):
        raise ValueError(f"--set {key}={text!r}: expected {_type_name(base)}.") from None


def _scalar(kind, text):
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(text)
    if kind is int:
        value = float(text)
        if not value.is_integer():
            raise ValueError(text)
        return int(value)
    if kind is float:
        return float(text)
    return str(text)


def _type_name(kind) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a comma-separated list of {_type_name(typing.get_args(kind)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(kind, str(kind))


def check_rows(name, rows, allowed):
    if not isinstance(rows, tuple) or not rows:
        raise ValueError(f"{name} must be a non-empty list of table rows; got {rows!r}.")
    for row in rows:
        if row not in allowed:
            raise ValueError(f"{name}: unknown row {row!r}; allowed: {', '.join(allowed)}.")


def paper_row(table: str, row: str):
    from ..training import PAPER_TABLES

    return PAPER_TABLES[table][row]


def progress_bar(iterable, *, desc: str, enabled: bool, total: int | None = None):
    """A tqdm bar with ETA on stderr when ``enabled``; the iterable itself otherwise."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="row", leave=False)


def pearson_r(a, b) -> float:
    """Pearson correlation of two 1-D samples (NaN for fewer than 3 points or no spread)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denom) if denom > 0 else float("nan")


def median_or_nan(values) -> float:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def scaled_layer(table_layer: int, table_depth: int, depth: int) -> int:
    """The table's hidden layer moved to a network of another depth (same relative position)."""
    if depth == table_depth:
        return table_layer
    return min(depth - 1, int(round(table_layer * depth / table_depth)))


def subsample_times(n_steps: int, n_points: int) -> np.ndarray:
    """Indices of about ``n_points`` steps for figures and saved theory curves (ends included)."""
    if n_steps <= n_points:
        return np.arange(n_steps)
    return np.unique(np.round(np.linspace(0, n_steps - 1, n_points)).astype(int))


# --------------------------------------------------------------------------- two-point runs

TRAINING_DIVERGED = NOT_FITTED
"""Fit status recorded for a seed whose training diverged (it is never fitted):
:data:`rsd.fitting.NOT_FITTED` (−1), the status :func:`rsd.fitting.fit_rates_masked`
(used here) gives the seeds it leaves out."""


def two_point_setting(row: str, *, width=None, depth=None, lr=None, steps=None, layers=None,
                      cnn_depth=None):
    """Row ``row`` of the 2-points table as a :class:`~rsd.training.Setting`, resized.

    ``Setting.from_paper`` gives the two-point protocol (table lr / 2, 2·n_epochs
    steps); ``lr`` and ``steps`` replace those where an experiment's protocol differs.
    ``width`` caps the width for quick runs (rows narrower than it keep theirs, so
    "narrow" stays narrow); ``depth`` replaces the depth, and the recorded layer keeps
    its relative position; ``cnn_depth`` does the same for the CNN row alone (its
    convolutions dominate the cost on a CPU). A CNN keeps at least 16 features after
    its convolutions (it needs width > 10·(depth + 1)).
    """
    from ..training import Setting

    s = Setting.from_paper("2_points", row)
    changes = {}
    if s.architecture == "cnn" and cnn_depth is not None:
        depth = cnn_depth
    d = s.depth if depth is None else depth
    if depth is not None and depth != s.depth:
        changes["depth"] = depth
        changes["layers"] = (scaled_layer(s.layers[0], s.depth, depth),)
    if width is not None and width < s.width:
        changes["width"] = max(width, cnn_min_width(d) + 15) if s.architecture == "cnn" else width
    if lr is not None:
        changes["lr"] = lr
    if steps is not None:
        changes["steps"] = steps
    if layers is not None:
        changes["layers"] = layers
    return s.replace(**changes) if changes else s


@dataclasses.dataclass(frozen=True)
class PairRun:
    """What the two-point experiments take from :func:`~rsd.training.train`: h [S, T]
    (the first recorded layer), y, w, loss [S, T], e0 [S], the pair's dx2, dy2 and which
    seeds trained without diverging."""

    h: np.ndarray
    y: np.ndarray
    w: np.ndarray
    loss: np.ndarray
    e0: np.ndarray
    dx2: float
    dy2: float
    trained: np.ndarray

    @property
    def measured(self) -> np.ndarray:
        """(h, y, w) stacked on the last axis, [S, T, 3] (one recorded layer)."""
        return np.stack([self.h, self.y, self.w], -1)


def pair_distances(setting) -> tuple[float, float]:
    """(dx2, dy2) of the setting's two points as ``train`` measures them: the squared
    distances of the float32 points (``Run.dx2``, ``Run.dy2``), which every fit uses,
    sweeps' (:data:`rsd.sweeps.DEFINITIONS` 2) and experiments' alike."""
    from .. import data, quantities

    x, y = data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=setting.out_dim)
    return float(quantities.squared_distance(x[0], x[1])), float(quantities.squared_distance(y[0], y[1]))


def pair_run(rec) -> PairRun:
    """The two-point records of a :class:`rsd.training.Run` (h at the first recorded layer)."""
    from .. import training

    return PairRun(h=np.asarray(rec.h[..., 0]), y=np.asarray(rec.y), w=np.asarray(rec.w), loss=np.asarray(rec.loss),
                   e0=np.asarray(rec.e0), dx2=float(rec.dx2), dy2=float(rec.dy2),
                   trained=np.asarray(rec.status) == training.Status.OK)


@dataclasses.dataclass(frozen=True)
class SeedFits:
    """Per-seed fits of one recorded layer; seeds whose training diverged are not fitted
    (status ``TRAINING_DIVERGED``, NaN rates)."""

    eta_h: np.ndarray
    eta_y: np.ndarray
    loss: np.ndarray
    r2: np.ndarray  # [S, 3]
    status: np.ndarray  # FitStatus, or TRAINING_DIVERGED
    eta_mean: np.ndarray
    eta_mean_status: np.ndarray

    @property
    def ok(self):
        from ..fitting import FitStatus

        return self.status == FitStatus.OK


def table_fits(table: dict, prefix: str = "") -> SeedFits:
    """The per-seed fits in a sweep's results table ({column: array}): the rate columns
    ``{prefix}eta_h`` … ``{prefix}fit_status`` (:func:`rsd.sweeps.rates_analysis`), and
    η_ȳ from ``eta_mean``/``eta_mean_status`` (the "loss_rate" analysis) when the table
    has them for that prefix, else NaN and ``NOT_FITTED``."""
    column = lambda q: np.asarray(table[prefix + q])  # noqa: E731
    n = column("eta_h").size
    fitted_mean = prefix + "eta_mean" in table
    return SeedFits(eta_h=column("eta_h"), eta_y=column("eta_y"), loss=column("fit_loss"),
                    r2=np.stack([column(f"r2_{q}") for q in "hyw"], -1),
                    status=column("fit_status").astype(np.int32),
                    eta_mean=column("eta_mean") if fitted_mean else np.full(n, np.nan),
                    eta_mean_status=(column("eta_mean_status").astype(np.int32) if fitted_mean
                                     else np.full(n, NOT_FITTED, np.int32)))


def series_measured(series: dict) -> np.ndarray:
    """(h at the first recorded layer, y, w) of a sweep's series, stacked: [S, T, 3]."""
    return np.stack([series["h"][:, :, 0], series["y"], series["w"]], -1)


def fit_seeds(h, y, w, loss, e0, dx2, dy2, trained, *, vector_field=None) -> SeedFits:
    """Fit (η_h, η_y) to each trained seed's h, y, w [S, T] and η_ȳ to its loss [S, T]
    (every step recorded); seeds are masked as in :func:`fit_rates_masked`, and seeds
    with a non-finite loss too."""
    from .. import fitting

    h, y, w, loss = (np.asarray(a) for a in (h, y, w, loss))
    s = h.shape[0]
    usable = np.asarray(trained, bool) & np.all(np.isfinite(loss), axis=-1)
    eta_h, eta_y, fit_loss, r2, status = fit_rates_masked(h, y, w, dx2, dy2, usable,
                                                          vector_field=vector_field)
    out = SeedFits(eta_h=eta_h, eta_y=eta_y, loss=fit_loss, r2=r2, status=status,
                   eta_mean=np.full(s, np.nan),
                   eta_mean_status=np.full(s, TRAINING_DIVERGED, np.int32))
    # η_ȳ for the same seeds as (η_h, η_y): those fit_rates_masked did not leave out,
    # left-out slots gathering the first of them (same compiled program for any mask).
    fitted = status != TRAINING_DIVERGED
    idx = np.flatnonzero(fitted)
    if idx.size == 0:
        return out
    fill = np.where(fitted, np.arange(s), idx[0])
    dy2 = np.broadcast_to(np.asarray(dy2, h.dtype), (s,))
    e0 = np.broadcast_to(np.asarray(e0, h.dtype), (s,))
    zs = np.stack([h[fill], y[fill], w[fill]], -1)
    rate = fitting.fit_loss_rate(loss[fill], zs, dy2[fill], e0[fill])
    out.eta_mean[idx] = np.asarray(rate.eta_mean)[idx]
    out.eta_mean_status[idx] = np.asarray(rate.status)[idx]
    return out


def predicted_labels(network, params, x, chunk: int = 2048) -> np.ndarray:
    """argmax of each seed's output on x [n, d] (eval mode), [S, n]; params have a leading
    seed axis. x goes through in chunks of equal size (the last one padded), so memory
    stays bounded on 60,000 images and one program serves every chunk."""
    import jax
    import jax.numpy as jnp

    x = np.asarray(x, np.float32)
    n = len(x)
    chunk = max(1, min(chunk, n))
    padded = np.concatenate([x, np.zeros((-n % chunk,) + x.shape[1:], x.dtype)])
    apply = jax.jit(jax.vmap(lambda p, xs: jnp.argmax(network.apply(p, xs)[0], axis=-1),
                             in_axes=(0, None)))
    parts = [np.asarray(apply(params, padded[k:k + chunk])) for k in range(0, n, chunk)]
    return np.concatenate(parts, axis=-1)[:, :n]


def theory_curves(z0, ts, eta_h, eta_y, dx2, dy2, *, vector_field=None):
    """The theory solved from each seed's z0 [S, 3] at its fitted rates, at ``ts``
    ([S, len(ts), 3]); NaN for seeds without finite rates (never solved)."""
    from .. import theory

    z0 = np.asarray(z0, float)
    s = z0.shape[0]
    eta_h, eta_y = np.asarray(eta_h, float), np.asarray(eta_y, float)
    dx2 = np.broadcast_to(np.asarray(dx2, float), (s,))
    dy2 = np.broadcast_to(np.asarray(dy2, float), (s,))
    out = np.full((s, len(ts), 3), np.nan)
    idx = np.flatnonzero(np.isfinite(eta_h) & np.isfinite(eta_y) & (eta_h > 0) & (eta_y > 0)
                         & np.all(np.isfinite(z0), -1) & (z0[:, 0] > 0))
    if idx.size:
        # All seeds in one solve (placeholders where there are no rates), so the
        # compiled program depends on the seed count only.
        fill = np.full(s, idx[0])
        fill[idx] = idx
        kwargs = {} if vector_field is None else {"vector_field": vector_field}
        f32 = lambda a: np.asarray(a, np.float32)
        sol = theory.solve(f32(z0[fill]), f32(ts), f32(eta_h[fill]), f32(eta_y[fill]), f32(dx2[fill]),
                           f32(dy2[fill]), **kwargs)
        out[idx] = np.asarray(sol.zs)[idx]
    return out


def rate_summary(values, ok, *, seed: int = 0) -> dict[str, float]:
    """Mean and bootstrap 95% interval of the mean of ``values`` over the ``ok`` seeds."""
    from ..fitting import summarize_rates

    values = np.asarray(values, float)
    ok = np.asarray(ok, bool) & np.isfinite(values)
    if not ok.any():
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    import jax

    s = summarize_rates(np.where(ok, values, 0.0).astype(np.float32), ok, key=jax.random.key(seed))
    return {"mean": float(s.mean), "ci_low": float(s.ci_low), "ci_high": float(s.ci_high)}


def mnist_workload(label: str, config, *, fits: int = 0):
    """The dry run's :class:`~rsd.experiments._estimate.Workload` of an MNIST experiment:
    ``config.setting(n_train)`` with n_train 60,000 (IDX files) or 4,000 (the offline
    subset), records once per epoch."""
    from .. import data
    from ._estimate import Workload

    n_train = 60_000 if data.mnist_directory(config.mnist_dir) is not None else 4_000
    n_train = min(n_train, getattr(config, "train_limit", None) or n_train)
    s = config.setting(n_train)
    epochs = -(-s.steps // -(-n_train // s.batch_size))
    return Workload(label, s, config.seeds, 784, 10, n_data=n_train, records=epochs, fits=fits)


def setting_spec(setting, row: str, *, seeds: int, analyses, trajectories: bool = True,
                 layers=None, **extra) -> dict:
    """A sweep spec (the dict :func:`rsd.sweeps.parse_spec` reads) of one cell whose setting
    is ``setting``: base row ``row`` of the 2-points table, ``[set]`` the fields in which
    ``setting`` differs from it (so the cell's setting is ``setting`` exactly), seeds
    0 … seeds − 1 in one chunk, the named analyses, the full series kept when
    ``trajectories``; ``layers`` (default ``setting.layers``) are recorded; ``extra``
    top-level keys ("grid", "cell_seeds") or ``stop_loss``/``chunk_size`` for [run]."""
    import dataclasses as dc

    from ..training import Setting

    base = Setting.from_paper("2_points", row)
    changed = {f.name: getattr(setting, f.name) for f in dc.fields(Setting)
               if f.name not in ("name", "layers") and getattr(setting, f.name) != getattr(base, f.name)}
    layers = setting.layers if layers is None else layers
    run = {"chunk_size": extra.pop("chunk_size", seeds)}
    if "stop_loss" in extra:
        run["stop_loss"] = extra.pop("stop_loss")
    return {"base": {"table": "2_points", "row": row}, "seeds": seeds, "set": changed,
            "record": {"layers": list(layers), "trajectories": trajectories},
            "analysis": {"names": list(analyses)}, "run": run, **extra}


def sweep_results(spec: dict, store, *, progress: bool = False, trajectories: bool = True):
    """Run (or resume) an experiment's sweep, given as the dict :func:`rsd.sweeps.parse_spec`
    reads: (the :class:`rsd.sweeps.Plan`, its results table as {column: numpy array} in
    element order, and its series {"h" [E, T, K], "y", "w", "loss" [E, T]} when
    ``trajectories``, else None).

    Under ``rsd run`` (``store``: the experiment's :class:`rsd.sweeps.UnitStore`) the sweep
    lives in the unit's workspace, ``OUT/NAME/sweep/units/sweep-<hash>.work/``, and
    resumes at chunk granularity (``--force`` clears it with the units); it runs as one
    unit, so with several processes the process it belongs to runs it and the others
    read its results. Without a store it runs in a temporary folder. ``devices=None``: the devices
    of the experiment's :func:`rsd.training.use_devices` (``rsd run --devices``)."""
    import tempfile
    from pathlib import Path

    from .. import sweeps

    parsed = sweeps.parse_spec(spec)
    plan = sweeps.make_plan(parsed)
    digest = parsed.spec_hash[:16]

    def run(folder):
        sweeps.run_sweep(parsed, folder, progress=progress, devices=None)
        table = sweeps.read_results(folder)
        columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        if not trajectories:
            return columns, None
        import zarr

        group = zarr.open_group(str(Path(folder) / sweeps.TRAJECTORIES), mode="r")
        return columns, {k: np.asarray(group[k][:]) for k in ("h", "y", "w", "loss")}

    if store is not None:
        name = f"sweep-{digest}"
        columns, series = store.run(name, lambda: run(store.workspace(name)))
    else:
        with tempfile.TemporaryDirectory(prefix="rsd-sweep-") as folder:
            columns, series = run(Path(folder))
    return plan, columns, series
