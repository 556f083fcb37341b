"""The whole idea on two points: train a few seeds, fit the theory's rates to each.

Trains a handful of seeds of the paper's two-point network (narrower and shorter
than the paper's so it runs in about a minute on a CPU), records h, y, w every
step at a middle hidden layer, fits (η_h, η_y) of the effective theory to each
seed and η_ȳ to its loss curve, and compares the measured end state with the
closed-form prediction h∞.

It is a sweep (:func:`spec`): one cell, the seeds as elements, the analyses "rates",
"loss_rate" and "final_distance" of :mod:`rsd.sweeps`; what is left here is reading the
results table and trajectories, solving the theory at the fitted rates, and the plot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int_range
from .. import fitting, theory, training
from . import _common

__all__ = ["Config", "Result", "spec", "run", "plot", "metrics", "arrays", "summary"]


@dataclass(frozen=True)
class Config:
    table: str = "2_points"
    name: str = "default"
    width: int = 100  # the paper's default is 500
    depth: int = 10  # the paper's default is 20
    steps: int = 4000  # the paper's default is 6000
    seeds: int = 4
    layer: int | None = None  # hidden layer to record; None = the middle one

    def __post_init__(self):
        for name in ("width", "depth", "seeds"):
            check_int_range(name, getattr(self, name), 1)
        check_int_range("steps", self.steps, 3)
        if self.layer is not None and not (isinstance(self.layer, int) and 0 <= self.layer < self.depth):
            raise ValueError(f"layer must be None or an integer in [0, {self.depth}); got {self.layer!r}.")

    @classmethod
    def for_size(cls, size: str) -> "Config":
        _common.check_size(size)
        if size == "tiny":
            # 600 steps: at 300 the fits of seeds 0 and 1 are UNDETERMINED (the networks
            # have barely moved), so the tiny demo would show no rates.
            return cls(width=16, depth=4, steps=600, seeds=3)
        if size == "paper":
            return cls(width=500, depth=20, steps=6000, seeds=50, layer=10)
        return cls()


@dataclass(frozen=True)
class Result:
    config: Config
    setting: training.Setting
    ts: np.ndarray
    measured: np.ndarray  # [seeds, steps, 3] (h, y, w)
    fitted: np.ndarray  # [seeds, steps, 3] the theory at the fitted rates
    eta_h: np.ndarray
    eta_y: np.ndarray
    eta_mean: np.ndarray
    r2: np.ndarray  # [seeds, 3]
    fit_status: np.ndarray  # fitting.FitStatus, or -1 where the seed's training diverged
    h_inf: np.ndarray  # closed-form end state from the first step and the fitted rates
    loss: np.ndarray  # [seeds, steps]
    loss_fitted: np.ndarray


def spec(config: Config) -> dict:
    """The experiment as a sweep spec (the dict :func:`rsd.sweeps.parse_spec` reads): the
    row's seeds on its two points, h recorded at one hidden layer (the middle one unless
    ``config.layer``) with the full series kept, and per seed the fit of (η_h, η_y), the
    fit of η_ȳ to the loss curve and the closed-form end state h∞."""
    layer = config.depth // 2 if config.layer is None else config.layer
    return {"base": {"table": config.table, "row": config.name}, "seeds": config.seeds,
            "set": {"width": config.width, "depth": config.depth, "steps": config.steps,
                    "layers": [layer]},
            "record": {"trajectories": True},
            "analysis": {"names": ["rates", "loss_rate", "final_distance"]},
            "run": {"chunk_size": config.seeds}}


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    """Run the sweep of :func:`spec` (in ``OUT/two-point-fit/sweep/`` under ``rsd run``,
    so a killed run resumes at chunk granularity), then from its results table and
    trajectories: the theory at each seed's fitted rates and the analytic loss curve."""
    del upstream
    plan, table, series = _common.sweep_results(spec(config), store, progress=progress)
    setting = plan.cells[0].setting
    eta_h, eta_y, eta_mean, e0 = (np.asarray(table[k], float) for k in ("eta_h", "eta_y", "eta_mean", "e0"))
    r2 = np.stack([np.asarray(table[f"r2_{q}"], float) for q in "hyw"], -1)
    dx2, dy2 = _common.pair_distances(setting)  # the values the sweep's fits used
    ts = np.arange(setting.steps)
    measured = _common.series_measured(series)
    loss = series["loss"]
    curves = _common.theory_curves(measured[:, 0], ts, eta_h, eta_y, dx2, dy2)
    loss_fitted = np.full(loss.shape, np.nan)
    h_inf = np.full(len(eta_h), np.nan)
    good = np.isfinite(eta_h) & np.isfinite(eta_mean) & np.all(np.isfinite(curves), axis=(1, 2))
    if good.any():
        loss_fitted[good] = np.asarray(theory.loss_curve(ts.astype(float), curves[good], dy2,
                                                         eta_mean[good], e0[good]))
        h_inf[good] = np.asarray(table["final_distance_predicted"], float)[good]
    return Result(
        config=config, setting=setting, ts=ts, measured=measured, fitted=curves,
        eta_h=eta_h, eta_y=eta_y, eta_mean=eta_mean, r2=r2,
        fit_status=np.asarray(table["fit_status"], np.int32), h_inf=h_inf, loss=loss,
        loss_fitted=loss_fitted,
    )


def metrics(result: Result) -> dict[str, float]:
    ok = result.fit_status == fitting.FitStatus.OK
    out = {f"r2_{q}": _common.median_or_nan(result.r2[ok, k]) for k, q in enumerate("hyw")}
    out.update(eta_h=_common.median_or_nan(result.eta_h[ok]), eta_y=_common.median_or_nan(result.eta_y[ok]),
               fits_ok=int(ok.sum()), seeds=int(ok.size))
    return out


def arrays(result: Result) -> dict[str, np.ndarray]:
    return {"measured": result.measured, "fitted": result.fitted, "loss": result.loss,
            "loss_fitted": result.loss_fitted, "eta_h": result.eta_h, "eta_y": result.eta_y,
            "eta_mean": result.eta_mean, "r2": result.r2, "fit_status": result.fit_status,
            "h_inf": result.h_inf}


def describe(config: Config) -> str:
    return (f"row {config.name} of the {config.table} table at width {config.width}, depth {config.depth}, "
            f"{config.steps} steps, {config.seeds} seeds (a quick demonstration, not the paper's sizes).")


def summary(result: Result) -> str:
    s = result.setting
    lines = [f"{s.architecture} {s.activation} width {s.width} depth {s.depth} gain {s.gain} lr {s.lr} "
             f"{s.optimizer}, {s.steps} steps, hidden layer {s.layers[0]}",
             f"{'seed':>4} {'eta_h':>10} {'eta_y':>10} {'eta_mean':>10} {'R² h':>7} {'R² y':>7} {'R² w':>7} "
             f"{'h end':>8} {'h∞ pred':>8}  fit"]
    for i in range(len(result.eta_h)):
        r2 = result.r2[i]
        lines.append(f"{i:>4} {result.eta_h[i]:>10.3e} {result.eta_y[i]:>10.3e} {result.eta_mean[i]:>10.3e} "
                     f"{r2[0]:>7.4f} {r2[1]:>7.4f} {r2[2]:>7.4f} {result.measured[i, -1, 0]:>8.4f} "
                     f"{result.h_inf[i]:>8.4f}  {_status_name(result.fit_status[i])}")
    return "\n".join(lines)


def plot(result: Result):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(20, 3.6), constrained_layout=True)
    colors = plt.cm.tab10(np.arange(len(result.eta_h)))
    names = ["h (representation distance²)", "y (output distance²)", "w (alignment)"]
    for i, color in enumerate(colors):
        for k in range(3):
            axes[k].plot(result.ts, result.measured[i, :, k], color=color, lw=2, alpha=0.5,
                         label="network" if i == 0 else None)
            axes[k].plot(result.ts, result.fitted[i, :, k], color=color, ls="--", lw=1,
                         label="theory, fitted rates" if i == 0 else None)
        axes[3].semilogy(result.ts, result.loss[i], color=color, lw=2, alpha=0.5)
        axes[3].semilogy(result.ts, result.loss_fitted[i], color=color, ls="--", lw=1)
    for ax, name in zip(axes[:3], names):
        ax.set_title(name)
        ax.set_xlabel("training step")
    axes[0].legend(fontsize=7)
    axes[3].set_ylim(bottom=1e-7)  # below this float32 round-off dominates both curves
    axes[3].set_title("loss (network, analytic)")
    axes[3].set_xlabel("training step")
    ax = axes[4]
    ax.scatter(result.eta_h, result.eta_y, c=colors[: len(result.eta_h)])
    for i in range(len(result.eta_h)):
        ax.annotate(f"R² {result.r2[i, 0]:.3f}/{result.r2[i, 1]:.3f}/{result.r2[i, 2]:.3f}",
                    (result.eta_h[i], result.eta_y[i]), fontsize=7)
    ax.set_xlabel("fitted η_h")
    ax.set_ylabel("fitted η_y")
    ax.set_title("fitted effective rates (R² h/y/w)")
    return {"two-point-fit": fig}


def _status_name(code) -> str:
    return "TRAINING DIVERGED" if code == fitting.FitStatus.NOT_FITTED else fitting.FitStatus(int(code)).name
