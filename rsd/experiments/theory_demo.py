"""Rich versus lazy in the effective theory: trajectories and end states.

Solves the 3-D theory from initial representational distances spanning the rich
(small weights) and the lazy (large weights) regime and compares the end states
with the closed form h∞ and its two limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import theory

__all__ = ["Config", "Result", "run", "plot", "metrics", "arrays", "summary"]


@dataclass(frozen=True)
class Config:
    eta_h: float = 2e-3
    eta_y: float = 1e-3
    dx2: float = 1.0
    dy2: float = 0.5
    h0: tuple[float, ...] = (1e-4, 1e-2, 0.3, 3.0, 10.0)
    y0_ratio: float = 1e-2  # y0 = y0_ratio·h0 (output distance at initialization)
    steps: int = 20000
    saves: int = 201

    @classmethod
    def for_size(cls, size: str) -> "Config":
        from ._common import check_size

        check_size(size)
        return cls()


@dataclass(frozen=True)
class Result:
    config: Config
    ts: np.ndarray
    zs: np.ndarray  # [len(h0), saves, 3]
    status: np.ndarray
    h_inf: np.ndarray  # closed form
    rich: float
    h0_grid: np.ndarray = field(repr=False)
    h_inf_grid: np.ndarray = field(repr=False)


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    del upstream, progress, store  # one closed-form solve: nothing worth resuming
    c = config
    h0 = np.asarray(c.h0, float)
    y0 = c.y0_ratio * h0
    w0 = y0 - np.sqrt(y0 * c.dy2)  # outputs aligned with the targets
    z0 = np.stack([h0, y0, w0], -1)
    ts = np.linspace(0.0, c.steps, c.saves)
    sol = theory.solve(z0, ts, c.eta_h, c.eta_y, c.dx2, c.dy2)
    h_inf = theory.final_distance(h0, y0, c.eta_h, c.eta_y, c.dx2, c.dy2)
    grid = np.geomspace(1e-5, 1e2, 200)
    h_inf_grid = theory.final_distance(grid, c.y0_ratio * grid, c.eta_h, c.eta_y, c.dx2, c.dy2)
    return Result(config=c, ts=ts, zs=np.asarray(sol.zs), status=np.asarray(sol.status),
                  h_inf=np.asarray(h_inf), rich=float(theory.rich_limit(c.eta_h, c.eta_y, c.dx2, c.dy2)),
                  h0_grid=grid, h_inf_grid=np.asarray(h_inf_grid))


def summary(result: Result) -> str:
    lines = [f"{'h0':>9} {'h(T) solved':>12} {'h∞ closed form':>15} {'rich limit':>11} {'lazy limit':>11}  status"]
    for i, h0 in enumerate(result.config.h0):
        lines.append(f"{h0:>9.1e} {result.zs[i, -1, 0]:>12.5f} {result.h_inf[i]:>15.5f} "
                     f"{result.rich:>11.5f} {h0:>11.5f}  {theory.Status(int(result.status[i])).name}")
    return "\n".join(lines)


def plot(result: Result):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), constrained_layout=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(result.config.h0)))
    for i, h0 in enumerate(result.config.h0):
        for k, ax in enumerate(axes[:3]):
            ax.plot(result.ts, result.zs[i, :, k], color=colors[i], label=f"h0={h0:g}")
        axes[0].axhline(result.h_inf[i], color=colors[i], ls=":", lw=1)
    for ax, name in zip(axes[:3], ["h (representation distance²)", "y (output distance²)", "w (alignment)"]):
        ax.set_xlabel("training step")
        ax.set_title(name)
    axes[0].set_yscale("log")
    axes[1].axhline(result.config.dy2, color="k", ls=":", lw=1)
    axes[0].legend(fontsize=7)
    ax = axes[3]
    ax.loglog(result.h0_grid, result.h_inf_grid, "k", label="h∞ (closed form)")
    ax.axhline(result.rich, color="C0", ls="--", label="rich limit √(η_h/η_y·dx²·dy²)")
    ax.loglog(result.h0_grid, result.h0_grid, color="C3", ls="--", label="lazy limit h∞ = h0")
    ax.scatter(result.config.h0, result.zs[:, -1, 0], color=colors, zorder=3, label="solved, h(T)")
    ax.set_xlabel("h0")
    ax.set_title("end state")
    ax.legend(fontsize=7)
    return {"theory-demo": fig}


def metrics(result: Result) -> dict[str, float]:
    """End state solved against the closed form, per initial h0 (relative difference)."""
    out = {"rich_limit": float(result.rich)}
    for h0, z, h_inf in zip(result.config.h0, result.zs, result.h_inf):
        out[f"h0={h0:g}/h_end"] = float(z[-1, 0])
        out[f"h0={h0:g}/h_inf"] = float(h_inf)
    return out


def arrays(result: Result) -> dict[str, np.ndarray]:
    return {"ts": result.ts, "zs": result.zs, "status": result.status, "h_inf": result.h_inf}


def describe(config: Config) -> str:
    return (f"the theory alone at η_h={config.eta_h:g}, η_y={config.eta_y:g}, dx2={config.dx2:g}, "
            f"dy2={config.dy2:g}, from h0 in {config.h0}, {config.steps} steps.")
