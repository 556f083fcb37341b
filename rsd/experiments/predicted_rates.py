"""Effective rates predicted from the network's own gradient step, against the fitted ones.

Per row of the 2-points table (the two-point protocol of the reference notebook 2_points: SGD, or
Adam for the "adam" row, at the table's lr / 2 for 2·n_epochs steps): each seed is
trained once, recording its parameters at checkpoints 0 = c_0 < c_1 < … < c_M = T
(``train(..., checkpoint_steps=...)``); at each checkpoint ``rsd.fitting.predicted_rates``
reads (η_h, η_y, η_ȳ) off one training step of those parameters (docs/predicted-rates.md):
the SGD step −lr·∇L, or for Adam the step the run took, p(c + 1) − p(c), recorded too. The whole trajectory is fitted as in
``two-points``. Compared per seed: the prediction at step 0, and the median of the
predictions at the interior checkpoints c_1 … c_{M−1} ("along training"), each
divided by the fitted rate; and the theory run at the along-training prediction
against the measured h, y, w (R²), next to the fitted rates' R².

The parameter checkpoints come from the one training run that the trajectory and the
fits come from, so Adam's moments carry through and the dropout row is its own run.
At the last checkpoint (c_M = T, no step follows) Adam's prediction is read at T − 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_int_range, check_real
from .. import data, fitting, training
from ..sweeps import run_unit
from . import _common as c

__all__ = ["Config", "Result", "RowResult", "ROWS", "run", "plot", "metrics", "arrays", "summary",
           "describe", "checkpoint_steps", "train_checkpoints", "Checkpoints"]

ROWS = training.paper_names("2_points")
"""Every two-point row ("adam" predicted from the step Adam took)."""


@dataclass(frozen=True)
class Config:
    """``width``: a cap on the rows' widths (None = the table's); ``depth``/``steps``
    None = the table's depth and 2·n_epochs; ``cnn_depth``: the CNN row's depth.
    ``checkpoints``: M, the number of intervals between checkpoints (predictions at M + 1 steps)."""

    rows: tuple[str, ...] = ROWS
    seeds: int = 4
    width: int | None = 128
    depth: int | None = None
    cnn_depth: int | None = 4
    steps: int | None = None
    checkpoints: int = 8
    max_final_loss: float = 1e-2

    def __post_init__(self):
        c.check_rows("rows", self.rows, ROWS)
        check_int_range("seeds", self.seeds, 1)
        for name in ("width", "depth", "cnn_depth", "steps"):
            if getattr(self, name) is not None:
                check_int_range(name, getattr(self, name), 3 if name == "steps" else 1)
        check_int_range("checkpoints", self.checkpoints, 2)
        if self.steps is not None and self.steps < self.checkpoints:
            raise ValueError(f"steps must be >= checkpoints ({self.checkpoints}); got {self.steps}.")
        check_real("max_final_loss", self.max_final_loss, lo=0.0, lo_open=True)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        if size == "paper":
            return cls(seeds=50, width=None, cnn_depth=None)
        if size == "cpu":
            return cls(rows=("default", "shallow", "narrow", "linear", "tanh", "two_layer", "adam"), seeds=2,
                       width=None)
        if size == "tiny":
            return cls(rows=("default", "tanh"), seeds=2, width=16, depth=4, steps=2000,
                       checkpoints=4)
        # A CPU budget of about two minutes: the rows that span the regimes and
        # architectures most cheaply (the CNN's convolutions are slow on a CPU).
        return cls(rows=("default", "shallow", "narrow", "linear", "tanh", "two_layer", "adam"))

    def setting(self, row: str) -> training.Setting:
        return c.two_point_setting(row, width=self.width, depth=self.depth, steps=self.steps,
                                   cnn_depth=self.cnn_depth)


@dataclass(frozen=True)
class RowResult:
    row: str
    setting: training.Setting
    measured: np.ndarray  # [S, T, 3]
    loss: np.ndarray  # [S, T]
    trained: np.ndarray  # [S]
    fits: c.SeedFits
    kept: np.ndarray  # [S] trained, final loss <= max_final_loss, fit OK
    checkpoint_steps: np.ndarray  # [M + 1]
    predicted: np.ndarray  # [S, M + 1, 3] (η_h, η_y, η_ȳ) at each checkpoint
    predicted_along: np.ndarray  # [S, 3] median over the interior checkpoints
    theory_predicted: np.ndarray  # [S, T, 3] the theory at the along-training prediction
    r2_predicted: np.ndarray  # [S, 3]
    dx2: float
    dy2: float


@dataclass(frozen=True)
class Result:
    config: Config
    rows: tuple[RowResult, ...]


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    del upstream
    rows = [run_unit(store, f"row={row}", lambda: run_row(config, row)) for row in
            c.progress_bar(config.rows, desc="predicted-rates rows", enabled=progress)]
    return Result(config=config, rows=tuple(rows))


def checkpoint_steps(steps: int, checkpoints: int) -> np.ndarray:
    """The M + 1 checkpoint steps 0 = c_0 < … < c_M = ``steps`` (M = ``checkpoints``),
    c_m = m·⌊steps / M⌋ for m < M."""
    length = steps // checkpoints
    return np.array([m * length for m in range(checkpoints)] + [steps], np.int64)


@dataclass(frozen=True)
class Checkpoints:
    """One training run of a row with its parameters at the checkpoints.

    ``pair``: the recorded h, y, w, loss (as the other two-point experiments take them);
    ``steps``: the checkpoint steps [M + 1]; ``params``: per checkpoint, the parameters
    (leading seed axis) at which the prediction is read; ``updates``: None for SGD (the
    prediction takes −lr·∇L), else per checkpoint the step the run took from there."""

    pair: c.PairRun
    steps: np.ndarray
    params: list
    updates: list | None
    network: object


def train_checkpoints(setting: training.Setting, x, y, seeds: int, checkpoints: int) -> Checkpoints:
    """Train seeds 0 … ``seeds`` − 1 of ``setting`` once, keeping the parameters at the
    checkpoint steps (and, for an optimizer other than SGD, one step later)."""
    steps = setting.steps
    bounds = checkpoint_steps(steps, checkpoints)
    sgd = setting.optimizer == "sgd"
    after = np.minimum(bounds + 1, steps)
    before = np.where(after == bounds, bounds - 1, bounds)  # the last: T − 1 → T
    kept = bounds if sgd else np.union1d(before, after)
    run = training.train(setting, x, y, seeds=range(seeds), checkpoint_steps=tuple(int(t) for t in kept))
    where = {int(t): i for i, t in enumerate(kept)}
    at = lambda t: jax.tree.map(lambda a: a[:, where[int(t)]], run.checkpoints)  # noqa: E731
    pair = c.pair_run(run)
    network = setting.network(x.shape[-1], y.shape[-1])
    if sgd:
        return Checkpoints(pair, bounds, [at(t) for t in bounds], None, network)
    params = [at(t) for t in before]
    updates = [jax.tree.map(jnp.subtract, at(a), at(b)) for a, b in zip(after, before)]
    return Checkpoints(pair, bounds, params, updates, network)


def _r2(theory_z, measured):
    """1 − SS_res/SS_tot per seed and component over time (as the fits report it)."""
    resid = theory_z - measured
    dev = measured - measured.mean(axis=1, keepdims=True)
    ss_tot = np.sum(dev * dev, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - np.sum(resid * resid, axis=1) / ss_tot, np.nan)


def run_row(config: Config, row: str) -> RowResult:
    setting = config.setting(row)
    x, y = data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=setting.out_dim)
    run = train_checkpoints(setting, x, y, config.seeds, config.checkpoints)
    p, network = run.pair, run.network
    dx2, dy2 = p.dx2, p.dy2
    fits = c.fit_seeds(p.h, p.y, p.w, p.loss, p.e0, dx2, dy2, p.trained)
    kept = fits.ok & (p.loss[:, -1] <= config.max_final_loss)
    layer = setting.layers[0]

    @jax.jit
    def predict(params, update):
        step = (dict(lr=setting.lr) if update is None else {})
        p = jax.vmap(lambda q, u: fitting.predicted_rates(network, q, x, y, layer=layer, update=u,
                                                          loss=setting.loss, **step))(params, update)
        return jnp.stack([p.eta_h, p.eta_y, p.eta_mean], -1)

    updates = run.updates if run.updates is not None else [None] * len(run.params)
    predicted = np.stack([np.asarray(predict(q, u)) for q, u in zip(run.params, updates)], axis=1)  # [S, M+1, 3]
    with np.errstate(all="ignore"):
        interior = predicted[:, 1:-1]
        finite = np.isfinite(interior)
        along = np.where(finite.any(axis=1),
                         np.nanmedian(np.where(finite, interior, np.nan), axis=1), np.nan)
    measured = p.measured
    ts = np.arange(setting.steps, dtype=float)
    curves = c.theory_curves(measured[:, 0], ts, along[:, 0], along[:, 1], dx2, dy2)
    r2_pred = _r2(curves, measured)
    return RowResult(row=row, setting=setting, measured=measured, loss=p.loss, trained=p.trained,
                     fits=fits, kept=kept, checkpoint_steps=run.steps, predicted=predicted,
                     predicted_along=along, theory_predicted=curves, r2_predicted=r2_pred,
                     dx2=dx2, dy2=dy2)


def row_metrics(r: RowResult) -> dict[str, float]:
    k = r.kept
    out = {}
    fitted = np.stack([r.fits.eta_h, r.fits.eta_y], -1)
    with np.errstate(all="ignore"):
        along = r.predicted_along[:, :2] / fitted
        step0 = r.predicted[:, 0, :2] / fitted
    for i, name in enumerate(("eta_h", "eta_y")):
        out[f"{name}_ratio"] = c.median_or_nan(along[k, i])
        out[f"{name}_ratio_step0"] = c.median_or_nan(step0[k, i])
    for i, name in enumerate("hyw"):
        out[f"r2_{name}_predicted"] = c.median_or_nan(r.r2_predicted[k, i])
        out[f"r2_{name}_fitted"] = c.median_or_nan(r.fits.r2[k, i])
    out["kept"] = int(k.sum())
    out["seeds"] = int(k.size)
    return out


def metrics(result: Result) -> dict[str, float]:
    return {f"{r.row}/{key}": value for r in result.rows for key, value in row_metrics(r).items()}


def arrays(result: Result) -> dict[str, np.ndarray]:
    out = {}
    for r in result.rows:
        p = r.row + "/"
        out.update({p + "measured": r.measured.astype(np.float32), p + "loss": r.loss.astype(np.float32),
                    p + "trained": r.trained, p + "kept": r.kept, p + "eta_h": r.fits.eta_h,
                    p + "eta_y": r.fits.eta_y, p + "eta_mean": r.fits.eta_mean, p + "r2": r.fits.r2,
                    p + "fit_status": r.fits.status, p + "checkpoint_steps": r.checkpoint_steps,
                    p + "predicted": r.predicted, p + "predicted_along": r.predicted_along,
                    p + "theory_predicted": r.theory_predicted.astype(np.float32),
                    p + "r2_predicted": r.r2_predicted, p + "dx2": np.float64(r.dx2),
                    p + "dy2": np.float64(r.dy2)})
    return out


def summary(result: Result) -> str:
    m = metrics(result)
    lines = [f"{'row':>10} {'kept':>7} {'η_h pred/fit':>13} {'(step 0)':>10} {'η_y pred/fit':>13} "
             f"{'(step 0)':>10} {'R² h,y,w predicted':>22} {'R² h,y,w fitted':>22}"]
    for r in result.rows:
        g = lambda k: m[f"{r.row}/{k}"]  # noqa: E731
        lines.append(
            f"{r.row:>10} {g('kept'):>3}/{g('seeds'):<3} {g('eta_h_ratio'):>13.3g} "
            f"{g('eta_h_ratio_step0'):>10.3g} {g('eta_y_ratio'):>13.3g} {g('eta_y_ratio_step0'):>10.3g} "
            f"{g('r2_h_predicted'):>7.3f},{g('r2_y_predicted'):>6.3f},{g('r2_w_predicted'):>6.3f}   "
            f"{g('r2_h_fitted'):>7.3f},{g('r2_y_fitted'):>6.3f},{g('r2_w_fitted'):>6.3f}")
    return "\n".join(lines)


def describe(config: Config) -> str:
    s = config.setting(config.rows[0])
    width = "the table's widths" if config.width is None else f"widths capped at {config.width}"
    depth = "the table's depths" if config.depth is None else f"depth {config.depth}"
    if config.cnn_depth is not None and "cnn" in config.rows:
        depth += f" (the CNN at depth {config.cnn_depth})"
    return (f"{len(config.rows)} rows of the 2-points table ({', '.join(config.rows)}), "
            f"{config.seeds} seeds each, {width}, {depth}, SGD (Adam for adam) at table lr / 2 for "
            f"{'2·n_epochs' if config.steps is None else config.steps} steps (e.g. {s.steps}), "
            f"trained once with the parameters kept at {config.checkpoints + 1} equally spaced "
            "checkpoints. Predicted rates (rsd.fitting.predicted_rates, docs/predicted-rates.md) "
            "from the step taken at each checkpoint; "
            "'along training' is the median over the interior boundaries. Ratios are "
            "predicted / fitted, median over the seeds with final loss ≤ "
            f"{config.max_final_loss:g} and a converged fit; R² of the theory at the "
            "along-training prediction against the measured h, y, w. No reference numbers "
            "exist: the paper fits its rates and names predicting them as an open problem.")


def plot(result: Result) -> dict:
    import matplotlib.pyplot as plt

    figs = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for i, (ax, name) in enumerate(zip(axes, ("η_h", "η_y"))):
        lo, hi = np.inf, -np.inf
        for j, r in enumerate(result.rows):
            fitted = (r.fits.eta_h, r.fits.eta_y)[i]
            k = r.kept & np.isfinite(fitted)
            color = f"C{j % 10}"
            for values, marker, label in ((r.predicted_along[:, i], "o", r.row),
                                          (r.predicted[:, 0, i], "x", None)):
                ok = k & np.isfinite(values) & (values > 0)
                ax.scatter(fitted[ok], values[ok], marker=marker, s=18, color=color, label=label)
                if ok.any():
                    lo = min(lo, fitted[ok].min(), values[ok].min())
                    hi = max(hi, fitted[ok].max(), values[ok].max())
        if np.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"fitted {name} per step")
        ax.set_ylabel(f"predicted {name}")
        ax.set_title(f"{name}: along training (o), step 0 (x, positive only)")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    figs["scatter"] = fig

    r = result.rows[0]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    ax = axes[0]
    for s in range(min(4, r.predicted.shape[0])):
        for i, (name, fitted) in enumerate((("η_h", r.fits.eta_h), ("η_y", r.fits.eta_y))):
            ax.plot(r.checkpoint_steps, r.predicted[s, :, i] / fitted[s], f"C{i}.-",
                    label=name if s == 0 else None, alpha=0.7)
    ax.axhline(1, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("step")
    ax.set_title(f"{r.row}: predicted / fitted along training")
    ax.legend(fontsize=7)
    fitted_curves = c.theory_curves(r.measured[:, 0], np.arange(r.measured.shape[1], dtype=float),
                                    r.fits.eta_h, r.fits.eta_y, r.dx2, r.dy2)
    for i, (ax, name) in enumerate(zip(axes[1:], ("h", "y", "w"))):
        ax.plot(r.measured[0, :, i], "k-", lw=1.5, label="network")
        ax.plot(fitted_curves[0, :, i], "C0--", label="theory, fitted rates")
        ax.plot(r.theory_predicted[0, :, i], "C3:", lw=1.5, label="theory, predicted rates")
        ax.set_title(f"{name} (seed 0)")
        ax.set_xlabel("step")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    figs["trajectories"] = fig
    return figs


def workloads(config: Config) -> list:
    """The training programs of ``run(config)``, for ``rsd reproduce --dry-run``."""
    from ._estimate import Workload

    return [Workload(row, config.setting(row), config.seeds, 1, 1, fits=config.seeds, fit_programs=2)
            for row in config.rows]
