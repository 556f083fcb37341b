"""Effective rates predicted from the network's own steps, against the fitted ones.

Per row of the 2-points table (the two-point protocol of the reference notebook 2_points: SGD, or
Adam for the "adam" row, at the table's lr / 2 for 2·n_epochs steps): each seed is
trained once, recording its parameters at checkpoints 0 = c_0 < c_1 < … < c_M = T
(``train(..., checkpoint_steps=...)``). At each checkpoint two instantaneous predictors
(docs/predicted-rates.md):

- "step": ``rsd.fitting.predicted_rates``, the first-order change of one step (the SGD
  step −lr·∇L, or for Adam the step the run took, p(c + 1) − p(c), recorded too);
- "secant": ``rsd.fitting.secant_rates``, the actual change over ``secant_steps`` SGD
  steps from the checkpoint (NaN for Adam, whose moments these steps would not carry).

From each, three predictions of the fitted constant rates: at step 0 (the network at
initialization only), "along training" (the median over the interior checkpoints
c_1 … c_{M−1}), and "weighted" (``rsd.fitting.weighted_rates``: the constant rates a
least-squares fit gives, to first order, for the theory run with the interior
checkpoints' rates, linear in time between them and constant outside). The whole
trajectory is fitted as in ``two-points``; each prediction is divided by the fitted
rate, and the theory run at it is compared with the measured h, y, w (R²), next to the
fitted rates' R².

The parameter checkpoints come from the one training run that the trajectory and the
fits come from, so Adam's moments carry through and the dropout row is its own run.
At the last checkpoint (c_M = T, no step follows) Adam's prediction is read at T − 1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_int_range, check_real
from .. import data, fitting, training
from ..sweeps import run_unit
from . import _common as c

__all__ = ["Config", "Result", "RowResult", "ROWS", "run", "plot", "metrics", "arrays", "summary",
           "describe", "checkpoint_steps", "train_checkpoints", "Checkpoints", "PREDICTORS"]

REPORT_METRICS = ("kept", "seeds", "eta_h_ratio", "eta_y_ratio", "r2_h_predicted", "eta_h_ratio_secant",
                  "eta_y_ratio_secant", "r2_h_secant", "eta_h_ratio_weighted", "eta_y_ratio_weighted",
                  "r2_h_weighted", "r2_h_weighted_late", "r2_h_fitted", "r2_h_fitted_late")
"""The metrics the report's table shows (every predictor's are in ``metrics.json``): the
first-order step along training, the secant along training, the secant fit-weighted (over
the whole run and from the first interior checkpoint), and the fit's own R² of h."""

ROWS = training.paper_names("2_points")
"""Every two-point row ("adam" predicted from the step Adam took)."""


@dataclass(frozen=True)
class Config:
    """``width``: a cap on the rows' widths (None = the table's); ``depth``/``steps``
    None = the table's depth and 2·n_epochs; ``cnn_depth``: the CNN row's depth.
    ``checkpoints``: M, the number of intervals between checkpoints (predictions at M + 1 steps);
    ``secant_steps``: the SGD steps each secant prediction takes (``rsd.fitting.secant_rates``);
    ``weighted``: False leaves the fit-weighted predictions out (NaN; they compile a
    forward-mode solve of the whole trajectory)."""

    rows: tuple[str, ...] = ROWS
    seeds: int = 4
    width: int | None = 128
    depth: int | None = None
    cnn_depth: int | None = 4
    steps: int | None = None
    checkpoints: int = 24
    secant_steps: int = 8
    weighted: bool = True
    max_final_loss: float = 1e-2

    def __post_init__(self):
        c.check_rows("rows", self.rows, ROWS)
        check_int_range("seeds", self.seeds, 1)
        for name in ("width", "depth", "cnn_depth", "steps"):
            if getattr(self, name) is not None:
                check_int_range(name, getattr(self, name), 3 if name == "steps" else 1)
        check_int_range("checkpoints", self.checkpoints, 2)
        check_int_range("secant_steps", self.secant_steps, 1)
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
    secant: np.ndarray  # [S, M + 1, 3] secant (η_h, η_y, η_ȳ) at each checkpoint (NaN for Adam)
    secant_along: np.ndarray  # [S, 3] median over the interior checkpoints
    weighted: np.ndarray  # [S, 2] fit-weighted (η_h, η_y) of the interior secant rates
    weighted_step: np.ndarray  # [S, 2] the same for the first-order ("step") rates
    weighted_late: np.ndarray  # [S, 2] the weighted secant rates for the run from c_1 on
    theory_weighted: np.ndarray  # [S, T, 3] the theory at the weighted secant rates
    r2: dict  # predictor name -> [S, 3] R² of h, y, w of the theory at its rates
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


def _interior_median(rates):
    """[S, M + 1, k] → [S, k]: the median over the interior checkpoints of the finite values."""
    interior = rates[:, 1:-1]
    finite = np.isfinite(interior)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN, as intended
        return np.where(finite.any(axis=1), np.nanmedian(np.where(finite, interior, np.nan), axis=1), np.nan)


def _fill(rates):
    """Interior knots' (η_h, η_y) [S, M − 1, 2] for the weighted prediction: a value that is not
    finite and > 0 (w or h·r vanished there, or the step moved against the theory) takes the
    previous knot's, the first knots the first usable one; NaN where a seed has none."""
    out = np.array(rates, float)
    for s in range(out.shape[0]):
        for i in range(2):
            v = out[s, :, i]
            good = np.isfinite(v) & (v > 0)
            if not good.any():
                v[:] = np.nan
                continue
            last = v[np.argmax(good)]
            for m in range(v.size):
                last = v[m] if good[m] else last
                v[m] = last
    return out


def _weighted(z0, ts, knots, rates, dx2, dy2, time_weights):
    """``rsd.fitting.weighted_rates`` per seed from z0 [S, 3] (vmapped; one program per shape): [S, 2]."""
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    ts, knots, time_weights = f32(ts), f32(knots), f32(time_weights)
    one = lambda z, r: fitting.weighted_rates(z, ts, knots, r, dx2, dy2, time_weights=time_weights)  # noqa: E731
    w = jax.vmap(one)(f32(z0), f32(rates))
    return np.stack([np.asarray(w.eta_h, float), np.asarray(w.eta_y, float)], -1)


PREDICTORS = {
    "predicted": "step, along training (median over the interior checkpoints)",
    "step0": "step, at step 0 (initialization only)",
    "weighted_step": "step, fit-weighted over the interior checkpoints",
    "secant": "secant, along training (median over the interior checkpoints)",
    "secant_step0": "secant, at step 0 (initialization only)",
    "weighted": "secant, fit-weighted over the interior checkpoints",
    "weighted_late": "secant, fit-weighted, for the run from c_1 on (after the mean-error transient)",
}
"""The predictions compared with the fitted rates, by metric suffix (``predicted``: the
original ``eta_*_ratio`` / ``r2_*_predicted`` names)."""


def run_row(config: Config, row: str) -> RowResult:
    setting = config.setting(row)
    x, y = data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=setting.out_dim)
    run = train_checkpoints(setting, x, y, config.seeds, config.checkpoints)
    p, network = run.pair, run.network
    dx2, dy2 = p.dx2, p.dy2
    fits = c.fit_seeds(p.h, p.y, p.w, p.loss, p.e0, dx2, dy2, p.trained)
    kept = fits.ok & (p.loss[:, -1] <= config.max_final_loss)
    layer = setting.layers[0]
    sgd = setting.optimizer == "sgd"
    stack = lambda r: jnp.stack([r.eta_h, r.eta_y, r.eta_mean], -1)  # noqa: E731

    @jax.jit
    def predict(params, update):
        step = (dict(lr=setting.lr) if update is None else {})
        return stack(jax.vmap(lambda q, u: fitting.predicted_rates(network, q, x, y, layer=layer, update=u,
                                                                   loss=setting.loss, **step))(params, update))

    @jax.jit
    def secant(params):
        return stack(jax.vmap(lambda q: fitting.secant_rates(network, q, x, y, layer=layer, lr=setting.lr,
                                                             steps=config.secant_steps,
                                                             loss=setting.loss))(params))

    updates = run.updates if run.updates is not None else [None] * len(run.params)
    predicted = np.stack([np.asarray(predict(q, u)) for q, u in zip(run.params, updates)], axis=1)  # [S, M+1, 3]
    if sgd:
        secants = np.stack([np.asarray(secant(q)) for q in run.params], axis=1)
    else:
        secants = np.full_like(predicted, np.nan)
    along, secant_along = _interior_median(predicted), _interior_median(secants)
    measured = p.measured
    ts = np.arange(setting.steps, dtype=float)
    knots = run.steps[1:-1]
    nan = np.full((measured.shape[0], 2), np.nan)
    every = np.ones_like(ts)
    usable = config.weighted and sgd
    secant_knots = _fill(secants[:, 1:-1, :2])
    weighted = _weighted(measured[:, 0], ts, knots, secant_knots, dx2, dy2, every) if usable else nan
    weighted_step = (_weighted(measured[:, 0], ts, knots, _fill(predicted[:, 1:-1, :2]), dx2, dy2, every)
                     if config.weighted else nan)
    # The run from c_1 on, after the first steps' mean-error transient: the theory started at
    # z(c_1), on times c_1 … c_1 + T − 1 (the same length: the same compiled programs), of
    # which the first T − c_1 are compared.
    c1 = int(run.steps[1])
    late_ts, late = ts + c1, setting.steps - c1
    weighted_late = (_weighted(measured[:, c1], late_ts, knots, secant_knots, dx2, dy2,
                               (late_ts < setting.steps).astype(float)) if usable else nan)
    rates = _rates(predicted, along, secants, secant_along, weighted, weighted_step)
    curves = {k: c.theory_curves(measured[:, 0], ts, v[:, 0], v[:, 1], dx2, dy2) for k, v in rates.items()}
    r2 = {k: _r2(v, measured) for k, v in curves.items()}
    for key, (eta_h, eta_y) in (("weighted_late", weighted_late.T), ("fitted_late", (fits.eta_h, fits.eta_y))):
        r2[key] = _r2(c.theory_curves(measured[:, c1], late_ts, eta_h, eta_y, dx2, dy2)[:, :late],
                      measured[:, c1:])
    return RowResult(row=row, setting=setting, measured=measured, loss=p.loss, trained=p.trained,
                     fits=fits, kept=kept, checkpoint_steps=run.steps, predicted=predicted,
                     predicted_along=along, theory_predicted=curves["predicted"], r2_predicted=r2["predicted"],
                     secant=secants, secant_along=secant_along, weighted=weighted, weighted_step=weighted_step,
                     weighted_late=weighted_late,
                     theory_weighted=curves["weighted"], r2=r2, dx2=dx2, dy2=dy2)


def _rates(predicted, along, secants, secant_along, weighted, weighted_step) -> dict:
    """Every whole-run predictor's (η_h, η_y) [S, 2], by metric suffix (``weighted_late``,
    for the run from c_1 on, is apart)."""
    return {"predicted": along[:, :2], "step0": predicted[:, 0, :2], "weighted_step": weighted_step,
            "secant": secant_along[:, :2], "secant_step0": secants[:, 0, :2], "weighted": weighted}


def row_metrics(r: RowResult) -> dict[str, float]:
    """Per row: ``eta_{h,y}_ratio[_<predictor>]`` (predicted / fitted) and
    ``r2_{h,y,w}_<predictor>`` (the theory at the predicted rates), median over the kept
    seeds, for every predictor of :data:`PREDICTORS` (the along-training step predictor
    keeps its first names ``eta_*_ratio`` and ``r2_*_predicted``, step 0 ``eta_*_ratio_step0``);
    ``r2_*_fitted`` at the fitted rates; ``r2_*_fitted_late`` at the fitted rates, for the run
    from c_1 on (as ``weighted_late``); kept and seeds."""
    k = r.kept
    out = {}
    fitted = np.stack([r.fits.eta_h, r.fits.eta_y], -1)
    rates = _rates(r.predicted, r.predicted_along, r.secant, r.secant_along, r.weighted, r.weighted_step)
    for key, values in {**rates, "weighted_late": r.weighted_late}.items():
        with np.errstate(all="ignore"):
            ratio = values / fitted
        suffix = "" if key == "predicted" else f"_{key}"
        for i, name in enumerate(("eta_h", "eta_y")):
            out[f"{name}_ratio{suffix}"] = c.median_or_nan(ratio[k, i])
        for i, name in enumerate("hyw"):
            out[f"r2_{name}_{key}"] = c.median_or_nan(r.r2[key][k, i])
    for i, name in enumerate("hyw"):
        out[f"r2_{name}_fitted"] = c.median_or_nan(r.fits.r2[k, i])
        out[f"r2_{name}_fitted_late"] = c.median_or_nan(r.r2["fitted_late"][k, i])
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
                    p + "r2_predicted": r.r2_predicted, p + "secant": r.secant,
                    p + "secant_along": r.secant_along, p + "weighted": r.weighted,
                    p + "weighted_step": r.weighted_step, p + "weighted_late": r.weighted_late,
                    p + "theory_weighted": r.theory_weighted.astype(np.float32),
                    **{f"{p}r2_{key}": v for key, v in r.r2.items() if key != "predicted"},
                    p + "dx2": np.float64(r.dx2),
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
    lines += ["", "Every predictor (docs/predicted-rates.md): predicted / fitted and R² of the theory at "
              "the predicted rates, median over kept seeds", f"{'row':>10} {'predictor':>16} {'η_h':>9} "
              f"{'η_y':>9} {'R² h,y,w':>22}"]
    order = ("step0", "predicted", "weighted_step", "secant_step0", "secant", "weighted", "weighted_late",
             "fitted_late")
    names = {"predicted": "step (along)", "step0": "step (step 0)", "weighted_step": "step weighted",
             "secant": "secant (along)", "secant_step0": "secant (step 0)", "weighted": "secant weighted",
             "weighted_late": "… from c_1 on", "fitted_late": "fitted, c_1 on"}
    for r in result.rows:
        g = lambda k: m.get(f"{r.row}/{k}", float("nan"))  # noqa: E731
        for key in order:
            suffix = "" if key == "predicted" else f"_{key}"
            ratios = (f"{'—':>9} {'—':>9}" if key == "fitted_late" else
                      f"{g('eta_h_ratio' + suffix):>9.3g} {g('eta_y_ratio' + suffix):>9.3g}")
            lines.append(f"{r.row:>10} {names[key]:>16} {ratios}   {g(f'r2_h_{key}'):>7.3f},"
                         f"{g(f'r2_y_{key}'):>6.3f},{g(f'r2_w_{key}'):>6.3f}")
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
            "checkpoints. Predicted rates from the step taken at each checkpoint (first order, "
            "rsd.fitting.predicted_rates) and from the actual change over "
            f"{config.secant_steps} SGD steps from it (rsd.fitting.secant_rates; not for Adam); each "
            "at step 0, 'along training' (the median over the interior checkpoints) and fit-weighted "
            "(rsd.fitting.weighted_rates over the interior checkpoints); docs/predicted-rates.md. "
            "Ratios are predicted / fitted, median over the seeds with final loss ≤ "
            f"{config.max_final_loss:g} and a converged fit; R² of the theory at the "
            "predicted rates against the measured h, y, w. No reference numbers "
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
                                          (r.predicted[:, 0, i], "x", None),
                                          (r.weighted[:, i], "s", None)):
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
        ax.set_title(f"{name}: step along (o), step 0 (x, > 0), secant weighted (■)", fontsize=9)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    figs["scatter"] = fig

    r = result.rows[0]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    ax = axes[0]
    for s in range(min(4, r.predicted.shape[0])):
        for i, (name, fitted) in enumerate((("η_h", r.fits.eta_h), ("η_y", r.fits.eta_y))):
            ax.plot(r.checkpoint_steps, r.predicted[s, :, i] / fitted[s], f"C{i}.-",
                    label=f"{name} step" if s == 0 else None, alpha=0.7)
            ax.plot(r.checkpoint_steps, r.secant[s, :, i] / fitted[s], f"C{i + 2}x--",
                    label=f"{name} secant" if s == 0 else None, alpha=0.7)
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
        ax.plot(r.theory_predicted[0, :, i], "C3:", lw=1.5, label="theory, step along training")
        ax.plot(r.theory_weighted[0, :, i], "C2-.", lw=1.2, label="theory, secant weighted")
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
