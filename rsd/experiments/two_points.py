"""Every row of the paper's two-point table: networks against the theory at fitted rates.

Per row of the 2-points table (the protocol of the reference notebook 2_points): train the seeds
with SGD (Adam for the "adam" row) at the table's lr / 2 for 2·n_epochs steps on two
points, record h, y, w at the table's hidden layer every step, fit (η_h, η_y) to each
seed and η_ȳ to its loss curve, and average the rates over the seeds whose final loss
is at most 1e-2 (the others are counted, not averaged).

Each row is a sweep (:func:`spec`): one cell, the seeds as elements in one chunk, the
analyses "rates" and "loss_rate" of :mod:`rsd.sweeps`; what is left here is the theory
at the fitted rates, the statistics over seeds and the plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int_range, check_real
from .. import theory, training
from . import _common as c

__all__ = ["Config", "Result", "RowResult", "spec", "run", "plot", "metrics", "arrays", "summary", "table",
           "rates", "rates_from_table"]

REPORT_METRICS = ("kept", "seeds", "r2_h", "r2_y", "r2_w", "eta_h", "eta_y", "eta_mean", "h_end_over_h0")
"""The metrics the report's table shows (all are in ``metrics.json``)."""

ROWS = training.paper_names("2_points")


@dataclass(frozen=True)
class Config:
    """``width``: a cap on the rows' widths (None = the table's); ``depth``/``steps``
    None = the table's depth and 2·n_epochs; ``cnn_depth``: the CNN row's depth (None =
    ``depth``; its convolutions dominate the cost on a CPU)."""

    rows: tuple[str, ...] = ROWS
    seeds: int = 4
    width: int | None = 128
    depth: int | None = None
    cnn_depth: int | None = 4
    steps: int | None = None
    max_final_loss: float = 1e-2
    plot_seeds: int = 4

    def __post_init__(self):
        c.check_rows("rows", self.rows, ROWS)
        check_int_range("seeds", self.seeds, 1)
        for name in ("width", "depth", "cnn_depth", "steps"):
            if getattr(self, name) is not None:
                check_int_range(name, getattr(self, name), 3 if name == "steps" else 1)
        check_real("max_final_loss", self.max_final_loss, lo=0.0, lo_open=True)
        check_int_range("plot_seeds", self.plot_seeds, 1)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        if size == "paper":
            return cls(seeds=50, width=None, cnn_depth=None)
        if size == "cpu":
            # Every row but the CNN at the table's sizes: at width 500 and depth 10 its
            # convolutions take ~40–90 ms a step on a 2-core CPU (9 min a seed).
            return cls(rows=tuple(r for r in ROWS if r != "cnn"), seeds=4, width=None, cnn_depth=None)
        if size == "tiny":
            return cls(rows=("default", "tanh", "relu"), seeds=3, width=16, depth=4, steps=2000)
        # Width 128 (a 15th of the cost of 500) trains the rich and intermediate rows to
        # the 1e-2 loss and the theory fits them (median R² of h and y 0.97–1.00). The
        # rows the fit fails at width 128 fail it at width 500 too (measured with 2–3
        # seeds: dropout R² of y 0.93 at both; gain 1.3 R² of h 0.91 at 128, 0.74 at 500;
        # gain 1.4 −0.01 and −47, with h falling while y rises; gain 1.6 not trained to
        # 1e-2 in 6,000 steps at either; Adam R² of h −0.5 at 500), so they stay at 128.
        # The CNN at depth 4: at its table size a step takes 40–90 ms on a 2-core CPU.
        return cls(seeds=3)

    def setting(self, row: str) -> training.Setting:
        return c.two_point_setting(row, width=self.width, depth=self.depth, steps=self.steps,
                                   cnn_depth=self.cnn_depth)


@dataclass(frozen=True)
class RowResult:
    row: str
    setting: training.Setting
    measured: np.ndarray  # [S, T, 3] (h, y, w), every step
    loss: np.ndarray  # [S, T]
    e0: np.ndarray  # [S]
    trained: np.ndarray  # [S] training finished without diverging
    fits: c.SeedFits
    kept: np.ndarray  # [S] trained, final loss <= max_final_loss, fit OK
    t_plot: np.ndarray  # [P] steps at which the theory curves are saved
    theory: np.ndarray  # [S, P, 3] the theory at each seed's fitted rates
    loss_theory: np.ndarray  # [S, P] the analytic loss at the fitted η_ȳ
    dx2: float
    dy2: float


@dataclass(frozen=True)
class Result:
    config: Config
    rows: tuple[RowResult, ...]


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    del upstream
    rows = []
    for row in c.progress_bar(config.rows, desc="two-points rows", enabled=progress):
        rows.append(run_row(config, row, store=store))
    return Result(config=config, rows=tuple(rows))


def spec(config: Config, row: str) -> dict:
    """One row as a sweep spec (the dict :func:`rsd.sweeps.parse_spec` reads): the row's
    seeds on its two points in one chunk, h recorded at its layer with the full series
    kept, and per seed the fit of (η_h, η_y) ("rates") and of η_ȳ ("loss_rate")."""
    return c.setting_spec(config.setting(row), row, seeds=config.seeds,
                          analyses=["rates", "loss_rate"])


def run_row(config: Config, row: str, *, store=None) -> RowResult:
    """Train and fit one row (the sweep of :func:`spec`, resumable under ``rsd run``), then
    the theory and the analytic loss at each seed's fitted rates."""
    setting = config.setting(row)
    _, table, series = c.sweep_results(spec(config, row), store)
    loss, e0 = series["loss"], np.asarray(table["e0"], np.float32)
    trained = np.asarray(table["train_status"]) == training.Status.OK
    dx2, dy2 = c.pair_distances(setting)  # the values the sweep's fits used
    fits = c.table_fits(table)
    kept = fits.ok & (loss[:, -1] <= config.max_final_loss)
    t_plot = c.subsample_times(setting.steps, 400)
    measured = c.series_measured(series)
    curves = c.theory_curves(measured[:, 0], t_plot, fits.eta_h, fits.eta_y, dx2, dy2)
    good = np.isfinite(fits.eta_mean) & np.all(np.isfinite(curves[:, :, 1:]), axis=(1, 2))
    loss_theory = np.full((config.seeds, len(t_plot)), np.nan)
    if good.any():
        loss_theory[good] = np.asarray(theory.loss_curve(
            t_plot.astype(float), curves[good], dy2, fits.eta_mean[good], e0[good]))
    return RowResult(row=row, setting=setting, measured=measured, loss=loss, e0=e0, trained=trained,
                     fits=fits, kept=kept, t_plot=t_plot, theory=curves, loss_theory=loss_theory,
                     dx2=dx2, dy2=dy2)


def row_metrics(r: RowResult) -> dict[str, float]:
    k = r.kept
    out = {}
    for i, name in enumerate("hyw"):
        out[f"r2_{name}"] = c.median_or_nan(r.fits.r2[k, i])
    for name, values, ok in (("eta_h", r.fits.eta_h, k), ("eta_y", r.fits.eta_y, k),
                             ("eta_mean", r.fits.eta_mean, k & (r.fits.eta_mean_status == 0))):
        s = c.rate_summary(values, ok)
        out[name] = s["mean"]
        out[f"{name}_ci_low"] = s["ci_low"]
        out[f"{name}_ci_high"] = s["ci_high"]
    # On the theory's solutions h rises and falls with y (h² − C·h = k·y): a network whose
    # h ends below h0 while y rises is one no constant rates can follow.
    t = r.trained
    out["h_end_over_h0"] = c.median_or_nan(r.measured[t, -1, 0] / r.measured[t, 0, 0]) if t.any() else float("nan")
    out["y_rises"] = int(np.sum(r.measured[t, -1, 1] > r.measured[t, 0, 1]))
    out["kept"] = int(k.sum())
    out["seeds"] = int(k.size)
    out["diverged"] = int((~r.trained).sum())
    out["final_loss_above"] = int((r.trained & (r.loss[:, -1] > 1e-2)).sum())
    out["fit_not_ok"] = int((r.trained & ~r.fits.ok).sum())
    return out


def metrics(result: Result) -> dict[str, float]:
    out = {}
    for r in result.rows:
        for key, value in row_metrics(r).items():
            out[f"{r.row}/{key}"] = value
    return out


def table(result: Result) -> dict[str, np.ndarray]:
    """The per-seed results table, one entry per (row, seed): ``row``, ``seed``, the fitted
    ``eta_h``, ``eta_y``, ``eta_mean``, ``r2_h``, ``r2_y``, ``r2_w``, ``fit_status``,
    ``trained``, ``kept`` and ``final_loss``. The driver writes it as
    ``OUT/two-points/results.parquet``; experiments that build on two-points read it."""
    def column(get):
        return np.concatenate([np.asarray(get(r)) for r in result.rows])

    return {"row": np.array([r.row for r in result.rows for _ in range(r.kept.size)], dtype=object),
            "seed": column(lambda r: np.arange(r.kept.size, dtype=np.int64)),
            "eta_h": column(lambda r: r.fits.eta_h.astype(float)),
            "eta_y": column(lambda r: r.fits.eta_y.astype(float)),
            "eta_mean": column(lambda r: r.fits.eta_mean.astype(float)),
            **{f"r2_{n}": column(lambda r, i=i: r.fits.r2[:, i].astype(float)) for i, n in enumerate("hyw")},
            "fit_status": column(lambda r: r.fits.status.astype(np.int32)),
            "trained": column(lambda r: r.trained.astype(bool)),
            "kept": column(lambda r: r.kept.astype(bool)),
            "final_loss": column(lambda r: r.loss[:, -1].astype(float))}


def rates_from_table(columns) -> dict[str, tuple[float, float]]:
    """Each row's mean (η_h, η_y) over its kept seeds, from the per-seed results table
    (:func:`table`'s columns, or a ``pyarrow.Table`` of them read from
    ``results.parquet``): the same numbers as the metrics ``ROW/eta_h`` and ``ROW/eta_y``."""
    if hasattr(columns, "to_pydict"):
        columns = columns.to_pydict()
    missing = [k for k in ("row", "eta_h", "eta_y", "kept") if k not in columns]
    if missing:
        raise ValueError(f"a two-points results table needs the columns {', '.join(missing)}.")
    row = np.asarray(columns["row"], dtype=object)
    kept = np.asarray(columns["kept"], bool)
    out = {}
    for name in dict.fromkeys(row.tolist()):
        at = row == name
        out[name] = tuple(c.rate_summary(np.asarray(columns[k], float)[at], kept[at])["mean"]
                          for k in ("eta_h", "eta_y"))
    return out


def rates(result: Result) -> dict[str, tuple[float, float]]:
    """Each row's mean (η_h, η_y) over the kept seeds (:func:`rates_from_table` of the
    result's :func:`table`)."""
    return rates_from_table(table(result))


def arrays(result: Result) -> dict[str, np.ndarray]:
    out = {}
    for r in result.rows:
        p = r.row + "/"
        out.update({p + "measured": r.measured.astype(np.float32), p + "loss": r.loss.astype(np.float32),
                    p + "e0": r.e0, p + "trained": r.trained, p + "kept": r.kept,
                    p + "eta_h": r.fits.eta_h, p + "eta_y": r.fits.eta_y, p + "eta_mean": r.fits.eta_mean,
                    p + "r2": r.fits.r2, p + "fit_loss": r.fits.loss, p + "fit_status": r.fits.status,
                    p + "t_plot": r.t_plot, p + "theory": r.theory.astype(np.float32),
                    p + "loss_theory": r.loss_theory.astype(np.float32)})
    return out


def summary(result: Result) -> str:
    m = metrics(result)
    lines = [f"{'row':>10} {'kept':>7} {'R² h':>7} {'R² y':>7} {'R² w':>7} {'eta_h':>10} {'eta_y':>10} "
             f"{'eta_mean':>10}"]
    for r in result.rows:
        g = lambda k: m[f"{r.row}/{k}"]
        lines.append(f"{r.row:>10} {g('kept'):>3}/{g('seeds'):<3} {g('r2_h'):>7.4f} {g('r2_y'):>7.4f} "
                     f"{g('r2_w'):>7.4f} {g('eta_h'):>10.3e} {g('eta_y'):>10.3e} {g('eta_mean'):>10.3e}")
    return "\n".join(lines)


def describe(config: Config) -> str:
    s = config.setting(config.rows[0])
    width = "the table's widths" if config.width is None else f"widths capped at {config.width} (CNN at least 10·(depth+1)+16)"
    depth = "the table's depths" if config.depth is None else f"depth {config.depth}"
    if config.cnn_depth is not None:
        depth += f" (the CNN at depth {config.cnn_depth}, its recorded layer moved in proportion)"
    steps = "2·n_epochs steps" if config.steps is None else f"{config.steps} steps"
    return (f"{len(config.rows)} rows of the 2-points table, {config.seeds} seeds each, {width}, "
            f"{depth}, table lr / 2, {steps} (e.g. {s.steps} for the first row); rates averaged "
            f"over seeds with final loss ≤ {config.max_final_loss:g} and a converged fit.")


def plot(result: Result) -> dict:
    import matplotlib.pyplot as plt

    rows = result.rows
    n = len(rows)
    cols = min(5, n)
    nrows = -(-n // cols)
    figs = {}
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.8 * nrows), squeeze=False,
                             constrained_layout=True)
    colors = {"h": "C0", "y": "C1", "w": "C2"}
    for ax, r in zip(axes.flat, rows):
        shown = np.flatnonzero(r.trained)[: result.config.plot_seeds]
        t = np.arange(r.measured.shape[1])
        for i in shown:
            for k, name in enumerate("hyw"):
                ax.plot(t, r.measured[i, :, k], color=colors[name], lw=2, alpha=0.35,
                        label=f"{name} network" if i == shown[0] else None)
                ax.plot(r.t_plot, r.theory[i, :, k], color=colors[name], lw=0.9, ls="--",
                        label=f"{name} theory" if i == shown[0] else None)
        r2 = [c.median_or_nan(r.fits.r2[r.kept, k]) for k in range(3)]  # (no bootstrap needed here)
        ax.set_title(f"{r.row}  R² {r2[0]:.3f}/{r2[1]:.3f}/{r2[2]:.3f}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, ncol=2)
    fig.suptitle("two points: network (solid) against the theory at each seed's fitted rates (dashed); "
                 "median R² of h/y/w over kept seeds", fontsize=9)
    figs["trajectories"] = fig

    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.6 * nrows), squeeze=False,
                             constrained_layout=True)
    for ax, r in zip(axes.flat, rows):
        shown = np.flatnonzero(r.trained)[: result.config.plot_seeds]
        t = np.arange(r.loss.shape[1])
        for j, i in enumerate(shown):
            ax.plot(t, r.loss[i], color=f"C{j}", lw=2, alpha=0.35)
            ax.plot(r.t_plot, r.loss_theory[i], color=f"C{j}", lw=0.9, ls="--")
        if np.any(r.loss[shown] > 0):
            ax.set_yscale("log")
            ax.set_ylim(bottom=max(1e-7, float(np.min(r.loss[shown][r.loss[shown] > 0]))))
        ax.set_title(r.row, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("loss: network (solid) against the analytic loss curve at the fitted η_ȳ (dashed)",
                 fontsize=9)
    figs["loss"] = fig

    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    for j, r in enumerate(rows):
        k = r.kept
        ax.scatter(r.fits.eta_h[k], r.fits.eta_y[k], s=10, color=plt.cm.tab20(j % 20), label=r.row)
    if any(r.kept.any() for r in rows):
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("fitted η_h (per step)")
    ax.set_ylabel("fitted η_y (per step)")
    ax.set_title("fitted effective rates, kept seeds")
    ax.legend(fontsize=6, ncol=2)
    figs["rates"] = fig
    return figs


def workloads(config: Config) -> list:
    """The training programs of ``run(config)``, for ``rsd reproduce --dry-run``."""
    from ._estimate import Workload

    return [Workload(row, config.setting(row), config.seeds, 1, 1, fits=config.seeds, fit_programs=2)
            for row in config.rows]
