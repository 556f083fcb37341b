"""The whole idea on two points: train a few seeds, fit the theory's rates to each.

Trains a handful of seeds of the paper's two-point network (narrower and shorter
than the paper's so it runs in about a minute on a CPU), records h, y, w every
step at a middle hidden layer, fits (η_h, η_y) of the effective theory to each
seed and η_ȳ to its loss curve, and compares the measured end state with the
closed-form prediction h∞.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import data, fitting, theory, training

__all__ = ["Config", "Result", "run", "plot", "summary"]


@dataclass(frozen=True)
class Config:
    table: str = "2_points"
    name: str = "default"
    width: int = 100  # the paper's default is 500
    depth: int = 10  # the paper's default is 20
    steps: int = 4000  # the paper's default is 6000
    seeds: int = 4
    layer: int | None = None  # hidden layer to record; None = the middle one


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


def run(config: Config = Config()) -> Result:
    c = config
    paper = training.Setting.from_paper(c.table, c.name)
    layer = c.depth // 2 if c.layer is None else c.layer
    setting = paper.replace(width=c.width, depth=c.depth, steps=c.steps, layers=(layer,))
    x, y = data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=setting.out_dim)
    recorded = training.train(setting, x, y, seeds=range(c.seeds))
    h, yy, w = np.asarray(recorded.h[..., 0]), np.asarray(recorded.y), np.asarray(recorded.w)
    dx2, dy2 = float(recorded.dx2), float(recorded.dy2)
    fit = fitting.fit_rates(h, yy, w, dx2, dy2)
    # A diverged seed has no trajectory to fit: mask it (DESIGN.md §5) and say so.
    trained = np.asarray(recorded.status) == training.Status.OK
    fit_status = np.where(trained, np.asarray(fit.status), -1)
    ts = np.arange(setting.steps, dtype=h.dtype)
    z0 = np.stack([h[:, 0], yy[:, 0], w[:, 0]], -1)
    curves = theory.solve(z0, ts, fit.eta_h, fit.eta_y, dx2, dy2)
    measured = np.stack([h, yy, w], -1)
    loss_fit = fitting.fit_loss_rate(recorded.loss, measured, dy2, recorded.e0)
    loss_fitted = theory.loss_curve(ts, measured, dy2, loss_fit.eta_mean, recorded.e0)
    return Result(
        config=c, setting=setting, ts=ts, measured=measured, fitted=np.asarray(curves.zs),
        eta_h=np.where(trained, fit.eta_h, np.nan), eta_y=np.where(trained, fit.eta_y, np.nan), eta_mean=np.asarray(loss_fit.eta_mean),
        r2=np.asarray(fit.r2), fit_status=fit_status,
        h_inf=np.asarray(theory.final_distance(z0[:, 0], z0[:, 1], fit.eta_h, fit.eta_y, dx2, dy2)),
        loss=np.asarray(recorded.loss), loss_fitted=np.asarray(loss_fitted),
    )


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
    return fig


def _status_name(code) -> str:
    return "TRAINING DIVERGED" if code < 0 else fitting.FitStatus(int(code)).name
