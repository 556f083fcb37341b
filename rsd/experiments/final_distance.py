"""The closed-form end state h∞ against trained networks over a grid of input/output distances.

Per row of the 2-points table (the reference notebook 2_points): a 5 × 5 grid dx ∈ linspace(0.5, 1.5, 5),
dy ∈ linspace(0, 1, 5) (dx2 = dx², dy2 = dy²), one network per grid point, SGD at the
table's lr / 5 for at most 40,000 steps, each network stopping at the first step its
loss is below 1e-4 (all 25 in one batched program); points whose final loss is above
1e-3 are dropped. Prediction: h∞ from each network's own h0 and y0 at the row's mean
fitted rates from ``two-points``.

Each row is a sweep (:func:`spec`): the grid points as cells, one network each (seed =
the point's index: ``cell_seeds = "distinct"``), all in one chunk, with the analysis
"initial_state" (h0, y0 and the pair distances); the prediction needs the upstream
rates only, so new rates reuse the trained rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .._validation import check_int_range, check_real
from .. import theory, training
from . import _common as c
from . import two_points

__all__ = ["Config", "Result", "RowResult", "spec", "run", "plot", "metrics", "arrays", "summary", "workloads",
           "CPU_ROWS", "QUICK_ROWS"]

ROWS = two_points.ROWS
CPU_ROWS = ("default", "narrow", "gain_0.9", "gain_1.1")
"""The rows the cpu size runs (every row at the reference's width, grid and step cap)."""
QUICK_ROWS = ("default", "shallow", "narrow", "linear", "tanh", "relu", "gain_0.9", "gain_1.1",
              "gain_1.2", "two_layer")
"""The rows the quick size runs (two-points trains them at width 128 in its quick size)."""


@dataclass(frozen=True)
class Config:
    """``width``: a cap on the rows' widths (None = the table's); ``depth`` None = the
    table's. ``rates_size``: the size of the ``two-points`` run whose mean rates are
    used (its configuration restricted to these rows; reused from the output folder when
    there, else run here)."""

    rows: tuple[str, ...] = ROWS
    width: int | None = None
    depth: int | None = None
    cnn_depth: int | None = None
    grid: int = 5
    max_steps: int = 40000
    stop_loss: float = 1e-4
    max_final_loss: float = 1e-3
    lr_divisor: float = 5.0
    rates_size: str = "paper"

    def __post_init__(self):
        c.check_rows("rows", self.rows, ROWS)
        for name in ("width", "depth", "cnn_depth"):
            if getattr(self, name) is not None:
                check_int_range(name, getattr(self, name), 1)
        check_int_range("grid", self.grid, 2)
        check_int_range("max_steps", self.max_steps, 2)
        c.check_size(self.rates_size)
        for name in ("stop_loss", "max_final_loss", "lr_divisor"):
            check_real(name, getattr(self, name), lo=0.0, lo_open=True)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        if size == "paper":
            return cls()
        if size == "cpu":
            # The reference protocol on the rows whose 25 networks fit a 2-core CPU's
            # budget (at width 500 one seed-step costs about 2.8 ms); the rates are
            # two-points' at its cpu size (4 seeds).
            return cls(rows=CPU_ROWS, rates_size="cpu")
        if size == "tiny":
            t = two_points.Config.for_size("tiny")
            return cls(rows=t.rows, width=t.width, depth=t.depth, cnn_depth=t.cnn_depth, grid=3,
                       max_steps=6000, rates_size="tiny")
        # 475 networks of up to 40,000 steps do not fit in minutes on a CPU: a 3 × 3 grid
        # on the rows two-points trains at width 128 in its quick size (their rates are
        # reused), at width 128, capped at 12,000 steps (at width 500 the default row's
        # networks stop after 650–7,600 steps).
        return cls(rows=QUICK_ROWS, width=128, grid=3, max_steps=12000, rates_size="quick")

    def rates_config(self) -> two_points.Config:
        """The ``two-points`` configuration whose mean rates this experiment uses."""
        return dataclasses.replace(two_points.Config.for_size(self.rates_size), rows=self.rows)

    def setting(self, row: str) -> training.Setting:
        table = c.paper_row("2_points", row)
        return c.two_point_setting(row, width=self.width, depth=self.depth, cnn_depth=self.cnn_depth,
                                   lr=table.lr / self.lr_divisor, steps=self.max_steps)

    def grid_points(self):
        """(dx2, dy2) of every grid point, [grid², 2], dx the slow axis."""
        dx = np.linspace(0.5, 1.5, self.grid)
        dy = np.linspace(0.0, 1.0, self.grid)
        gx, gy = np.meshgrid(dx, dy, indexing="ij")
        return np.stack([gx.ravel() ** 2, gy.ravel() ** 2], -1)


@dataclass(frozen=True)
class RowResult:
    row: str
    setting: training.Setting
    eta_h: float
    eta_y: float
    dx2: np.ndarray  # [G]
    dy2: np.ndarray
    h0: np.ndarray
    y0: np.ndarray
    h_end: np.ndarray  # measured h at the stop (or last) step
    final_loss: np.ndarray
    stop_step: np.ndarray  # first step with loss < stop_loss (max_steps if never)
    trained: np.ndarray
    kept: np.ndarray
    predicted: np.ndarray  # h∞ from each network's own h0, y0


@dataclass(frozen=True)
class Result:
    config: Config
    rows: tuple[RowResult, ...]
    rates_source: str


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    rates, source = _rates(config, upstream, progress, store)
    rows = []
    for row in c.progress_bar(config.rows, desc="final-distance rows", enabled=progress):
        rows.append(run_row(config, row, *rates[row], store=store))
    return Result(config=config, rows=tuple(rows), rates_source=source)


def spec(config: Config, row: str) -> dict:
    """One row as a sweep spec (the dict :func:`rsd.sweeps.parse_spec` reads): the grid
    points (dx2, dy2) as cells, one network per point (seed = the point's index), all in
    one chunk, each stopping at ``stop_loss``; the analysis "initial_state" gives h0, y0
    and the pair distances the prediction uses."""
    points = config.grid_points()
    return c.setting_spec(config.setting(row), row, seeds=1, analyses=["initial_state"],
                          trajectories=False, cell_seeds="distinct",
                          grid={"dx2+dy2": [[float(a), float(b)] for a, b in points]},
                          chunk_size=len(points), stop_loss=config.stop_loss)


def _rates(config, upstream, progress, store=None):
    if upstream and "two-points" in upstream:
        rates = two_points.rates_from_table(upstream["two-points"])
        if all(row in rates for row in config.rows):
            return ({row: rates[row] for row in config.rows},
                    "two-points results table in the output folder")
    result = two_points.run(config.rates_config(), progress=progress, store=store)
    return two_points.rates(result), "two-points fitted here"


def run_row(config: Config, row: str, eta_h: float, eta_y: float, *, store=None) -> RowResult:
    """Train the row's grid (the sweep of :func:`spec`, resumable under ``rsd run``) and
    predict each network's h∞ at the rates (η_h, η_y)."""
    setting = config.setting(row)
    _, table, _ = c.sweep_results(spec(config, row), store, trajectories=False)
    f32 = lambda name: np.asarray(table[name], np.float32)  # the recorded float32 values
    h0, y0, h_end, final_loss = f32("h0"), f32("y0"), f32("final_h"), f32("final_loss")
    trained = np.asarray(table["train_status"]) == training.Status.OK
    dx2, dy2 = np.asarray(table["pair_dx2"], float), np.asarray(table["pair_dy2"], float)
    kept = trained & (final_loss <= config.max_final_loss) & np.isfinite(h_end)
    predicted = np.full(h0.size, np.nan)
    valid = np.isfinite(h0) & (h0 > 0) & np.isfinite(y0)
    if np.isfinite(eta_h) and np.isfinite(eta_y) and eta_h > 0 and eta_y > 0 and valid.any():
        predicted[valid] = np.asarray(theory.final_distance(h0[valid].astype(float), y0[valid].astype(float),
                                                            eta_h, eta_y, dx2[valid], dy2[valid]))
    return RowResult(row=row, setting=setting, eta_h=float(eta_h), eta_y=float(eta_y), dx2=dx2,
                     dy2=dy2, h0=h0, y0=y0, h_end=h_end, final_loss=final_loss,
                     stop_step=np.asarray(table["stop_step"], np.int32), trained=trained, kept=kept,
                     predicted=predicted)


def row_metrics(r: RowResult) -> dict[str, float]:
    k = r.kept & np.isfinite(r.predicted)
    rel = np.abs(r.predicted[k] - r.h_end[k]) / np.abs(r.h_end[k])
    return {"pearson_r": c.pearson_r(r.predicted[k], r.h_end[k]),
            "median_rel_error": c.median_or_nan(rel),
            "kept": int(k.sum()),
            "points": int(k.size),
            "longest_run": int(np.max(r.stop_step))}


def metrics(result: Result) -> dict[str, float]:
    return {f"{r.row}/{key}": value for r in result.rows for key, value in row_metrics(r).items()}


def arrays(result: Result) -> dict[str, np.ndarray]:
    out = {}
    for r in result.rows:
        for name in ("dx2", "dy2", "h0", "y0", "h_end", "final_loss", "stop_step", "trained", "kept",
                     "predicted"):
            out[f"{r.row}/{name}"] = np.asarray(getattr(r, name))
        out[f"{r.row}/rates"] = np.array([r.eta_h, r.eta_y])
    return out


def summary(result: Result) -> str:
    lines = [f"rates: {result.rates_source}",
             f"{'row':>10} {'kept':>7} {'pearson r':>10} {'med rel err':>12} {'longest run':>12}"]
    for r in result.rows:
        m = row_metrics(r)
        lines.append(f"{r.row:>10} {m['kept']:>3}/{m['points']:<3} {m['pearson_r']:>10.4f} "
                     f"{m['median_rel_error']:>12.4f} {m['longest_run']:>12d}")
    return "\n".join(lines)


def describe(config: Config) -> str:
    width = "the table's widths" if config.width is None else f"widths capped at {config.width}"
    depth = "" if config.depth is None else f", depth {config.depth}"
    if config.cnn_depth is not None:
        depth += f", the CNN at depth {config.cnn_depth}"
    return (f"{len(config.rows)} rows × a {config.grid}×{config.grid} (dx, dy) grid, {width}{depth}, "
            f"SGD at table lr / {config.lr_divisor:g}, at most {config.max_steps} steps, each network "
            f"stopping when its loss < {config.stop_loss:g}; points with final loss > "
            f"{config.max_final_loss:g} dropped; rates from two-points at its {config.rates_size} size"
            + ".")


def plot(result: Result) -> dict:
    import matplotlib.pyplot as plt

    figs = {}
    fig, ax = plt.subplots(figsize=(6.5, 5.5), constrained_layout=True)
    lo, hi = np.inf, -np.inf
    for j, r in enumerate(result.rows):
        k = r.kept & np.isfinite(r.predicted) & (r.h_end > 0) & (r.predicted > 0)
        if not k.any():
            continue
        ax.scatter(r.h_end[k], r.predicted[k], s=12, color=plt.cm.tab20(j % 20), label=r.row)
        lo = min(lo, r.h_end[k].min(), r.predicted[k].min())
        hi = max(hi, r.h_end[k].max(), r.predicted[k].max())
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured h at the end of training")
    ax.set_ylabel("theory h∞ (own h0, y0; row's mean rates)")
    ax.set_title("final representational distance, all rows")
    ax.legend(fontsize=6, ncol=2)
    figs["scatter"] = fig

    n = len(result.rows)
    cols = min(5, n)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 2.8 * nrows), squeeze=False,
                             constrained_layout=True)
    for ax, r in zip(axes.flat, result.rows):
        k = r.kept & np.isfinite(r.predicted)
        sc = ax.scatter(r.h_end[k], r.predicted[k], c=r.dy2[k], s=14, cmap="viridis")
        if k.any():
            lo, hi = min(r.h_end[k].min(), r.predicted[k].min()), max(r.h_end[k].max(), r.predicted[k].max())
            ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        m = row_metrics(r)
        ax.set_title(f"{r.row}  r={m['pearson_r']:.3f}  kept {m['kept']}/{m['points']}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(sc, ax=axes, shrink=0.6, label="dy2")
    fig.suptitle("measured (x) against predicted (y) end state per row, colour = dy2", fontsize=9)
    figs["rows"] = fig
    return figs


def needs(config: Config) -> dict:
    """Results this experiment reuses from the output folder when they are there."""
    return {"two-points": config.rates_config()}


def workloads(config: Config) -> list:
    """The training programs of ``run(config)`` (each at its step cap), for ``--dry-run``;
    two-points' rates are counted too (they are fitted here unless reused)."""
    from ._estimate import Workload

    points = config.grid ** 2
    return [Workload(row, config.setting(row), points, 1, 1) for row in config.rows]
