"""Which hidden layer does the two-point theory describe best? Fits at every layer.

The default row of the 2-points table trained as the reference's depth run does it
(its notebook 2_points_depth): SGD at the table's lr (0.01, not halved) for n_epochs (3,000) steps,
h recorded at all 20 hidden layers, and (η_h, η_y) fitted at every layer in one
batched fit. The reference's fit losses (one seed, width 500) are U-shaped with the
best layer near the middle.

It is a sweep (:func:`spec`): one cell, the seeds as elements, every hidden layer
recorded and the analysis "rates_all_layers" of :mod:`rsd.sweeps`; what is left here
is reading the results table and trajectories, the per-layer statistics and the plot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int_range
from .. import fitting, training
from . import _common as c

__all__ = ["Config", "Result", "spec", "run", "plot", "metrics", "arrays", "summary", "REFERENCE_LOSSES"]

REPORT_METRICS = ("loss", "best_layer", "first_over_best", "last_over_best")
"""The metrics the report's table shows (all are in ``metrics.json``)."""

REFERENCE_LOSSES = (22.1, 20.3, 17.3, 13.4, 9.78, 7.70, 5.06, 3.08, 1.85, 0.857, 0.358, 0.094, 0.100,
                    0.235, 0.523, 0.921, 1.49, 3.04, 2.06, 1.62)
"""The reference's fit loss at hidden layers 0…19 (one seed, width 500, read off its notebook 2_points_depth)."""


@dataclass(frozen=True)
class Config:
    """``width``/``depth`` None = the table's (500, 20); ``steps`` None = n_epochs."""

    row: str = "default"
    seeds: int = 2
    width: int | None = 128
    depth: int | None = None
    steps: int | None = None

    def __post_init__(self):
        c.check_rows("row", (self.row,), training.paper_names("2_points"))
        check_int_range("seeds", self.seeds, 1)
        for name in ("width", "depth"):
            if getattr(self, name) is not None:
                check_int_range(name, getattr(self, name), 2 if name == "depth" else 1)
        if self.steps is not None:
            check_int_range("steps", self.steps, 3)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        if size == "paper":
            return cls(seeds=1, width=None)
        if size == "cpu":
            return cls(seeds=4, width=None)
        if size == "tiny":
            return cls(seeds=2, width=16, depth=6, steps=300)
        # The table's width: at width 128 the loss at the last layers changed from one run
        # to the next by 30× (layer 19 / best 57 and 1,644 with 2 seeds); at width 500 a
        # seed-step costs ~2.8 ms, so 2 seeds of 3,000 steps take ~20 s.
        return cls(seeds=2, width=None)

    def setting(self) -> training.Setting:
        row = c.paper_row("2_points", self.row)
        s = c.two_point_setting(self.row, width=self.width, depth=self.depth, lr=row.lr,
                                steps=self.steps if self.steps is not None else row.n_epochs)
        return s.replace(layers=None)


@dataclass(frozen=True)
class Result:
    config: Config
    setting: training.Setting
    measured_h: np.ndarray  # [S, T, L]
    y: np.ndarray  # [S, T]
    w: np.ndarray
    trained: np.ndarray
    eta_h: np.ndarray  # [S, L]
    eta_y: np.ndarray
    fit_loss: np.ndarray  # [S, L]
    r2: np.ndarray  # [S, L, 3]
    status: np.ndarray  # [S, L]

    @property
    def layer_losses(self) -> np.ndarray:
        """Fit loss per layer: the median over the seeds that trained (NaN-free fits)."""
        loss = np.where(self.status == fitting.FitStatus.OK, self.fit_loss, np.nan)[self.trained]
        if loss.size == 0:
            return np.full(self.fit_loss.shape[1], np.nan)
        with np.errstate(all="ignore"):
            return np.array([c.median_or_nan(loss[:, k]) for k in range(loss.shape[1])])


def spec(config: Config) -> dict:
    """The experiment as a sweep spec (the dict :func:`rsd.sweeps.parse_spec` reads): the
    row's seeds on its two points, h recorded at every hidden layer with the full series
    kept, and every layer of every seed fitted in one batched fit ("rates_all_layers")."""
    s = config.setting()
    return c.setting_spec(s, config.row, seeds=config.seeds, analyses=["rates_all_layers"],
                          layers=range(s.depth))


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    """Run the sweep of :func:`spec` (in ``OUT/depth/sweep/`` under ``rsd run``, so a
    killed run resumes) and gather its per-layer fits; a seed whose training diverged
    keeps NaN rates, an infinite fit loss and status ``TRAINING_DIVERGED``."""
    del upstream
    _, table, series = c.sweep_results(spec(config), store, progress=progress)
    setting = config.setting()
    h, yy, w = series["h"], series["y"], series["w"]
    trained = (table["train_status"] == training.Status.OK) & np.all(np.isfinite(h), axis=(1, 2))
    layers = range(h.shape[2])
    column = lambda name: np.stack([np.asarray(table[f"{name}_layer{k}"], float) for k in layers], 1)
    status = np.stack([np.asarray(table[f"fit_status_layer{k}"]) for k in layers], 1).astype(np.int32)
    status[~trained] = c.TRAINING_DIVERGED
    fit_loss = np.where(trained[:, None], column("fit_loss"), np.inf)
    r2 = np.stack([column(f"r2_{q}") for q in "hyw"], -1)
    return Result(config=config, setting=setting, measured_h=h, y=yy, w=w, trained=trained,
                  eta_h=column("eta_h"), eta_y=column("eta_y"), fit_loss=fit_loss, r2=r2,
                  status=status)


def metrics(result: Result) -> dict[str, float]:
    losses = result.layer_losses
    out = {f"loss/{k}": float(v) for k, v in enumerate(losses)}
    if np.all(np.isnan(losses)):
        best = -1
        out.update(best_layer=best, first_over_best=float("nan"), last_over_best=float("nan"))
        return out
    best = int(np.nanargmin(losses))
    out.update(best_layer=best, first_over_best=float(losses[0] / losses[best]),
               last_over_best=float(losses[-1] / losses[best]))
    ok = result.status == fitting.FitStatus.OK
    for k in range(losses.size):
        out[f"eta_h/{k}"] = c.median_or_nan(np.where(ok[:, k], result.eta_h[:, k], np.nan))
        out[f"eta_y/{k}"] = c.median_or_nan(np.where(ok[:, k], result.eta_y[:, k], np.nan))
    return out


def reference_metrics(config: Config | None = None) -> dict[str, float]:
    """The reference's values of the metrics it has (its per-layer losses and their ratios),
    for a network of the reference's depth (none for another depth)."""
    if config is not None and config.setting().depth != len(REFERENCE_LOSSES):
        return {}
    ref = np.asarray(REFERENCE_LOSSES)
    best = int(np.argmin(ref))
    out = {f"loss/{k}": float(v) for k, v in enumerate(ref)}
    out.update(best_layer=best, first_over_best=float(ref[0] / ref[best]),
               last_over_best=float(ref[-1] / ref[best]))
    return out


def arrays(result: Result) -> dict[str, np.ndarray]:
    return {"h": result.measured_h.astype(np.float32), "y": result.y.astype(np.float32),
            "w": result.w.astype(np.float32), "trained": result.trained, "eta_h": result.eta_h,
            "eta_y": result.eta_y, "fit_loss": result.fit_loss, "r2": result.r2, "status": result.status}


def summary(result: Result) -> str:
    m = metrics(result)
    losses = result.layer_losses
    lines = [f"best layer {m['best_layer']}; loss at layer 0 / best = {m['first_over_best']:.3g}, "
             f"at the last layer / best = {m['last_over_best']:.3g}",
             "layer  " + " ".join(f"{k:>7d}" for k in range(losses.size)),
             "loss   " + " ".join(f"{v:>7.3g}" for v in losses)]
    return "\n".join(lines)


def describe(config: Config) -> str:
    s = config.setting()
    return (f"row {config.row}, {config.seeds} seed(s), width {s.width}, depth {s.depth}, SGD at lr "
            f"{s.lr:g} for {s.steps} steps (no halving), fitted at all {s.depth} hidden layers; the "
            "per-layer loss is the median over seeds. The reference's absolute losses are for width "
            "500 (h grows with width), so compare the ratios and the best layer.")


def plot(result: Result) -> dict:
    import matplotlib.pyplot as plt

    losses = result.layer_losses
    layers = np.arange(losses.size)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), constrained_layout=True)
    ax = axes[0]
    for i in np.flatnonzero(result.trained):
        ax.semilogy(layers, result.fit_loss[i], color="C0", alpha=0.3, lw=1)
    ax.semilogy(layers, losses, "o-", color="C0", label="rsd (median over seeds)")
    if losses.size == len(REFERENCE_LOSSES) and np.isfinite(np.nanmin(losses)):
        ref = np.asarray(REFERENCE_LOSSES)
        ax.semilogy(layers, ref / ref.min() * np.nanmin(losses), "s--", color="k", ms=3,
                    label="reference (scaled to rsd's best)")
    ax.set_xlabel("hidden layer (0-based)")
    ax.set_ylabel("fit loss")
    ax.set_title("fit loss by layer")
    ax.legend(fontsize=7)
    for ax, name, values in ((axes[1], "η_h", result.eta_h), (axes[2], "η_y", result.eta_y)):
        for i in np.flatnonzero(result.trained):
            ax.semilogy(layers, values[i], "o-", ms=3, alpha=0.7, label=f"seed {i}")
        ax.set_xlabel("hidden layer (0-based)")
        ax.set_title(f"fitted {name} by layer")
        ax.legend(fontsize=7)
    return {"depth": fig}


def workloads(config: Config) -> list:
    """The training program of ``run(config)``, for ``rsd reproduce --dry-run``."""
    from ._estimate import Workload

    s = config.setting()
    return [Workload(config.row, s, config.seeds, 1, 1, fits=config.seeds * s.depth)]
