"""Context-dependent blobs: how the initial weight scale shapes the learned representation.

The reference's "orthogonal" task (its notebook orthogonal): a 5 × 5-pixel Gaussian blob at each of
30 × 30 centres, shown twice, with a two-unit context that asks for the blob's x position
or its y position (1,800 points, 27 inputs, one output). A width-100, depth-4 network is
trained at the three initial scales of the table (gains 2, 0.5, 0.275: regimes high, low,
very_low) with SGD on shuffled minibatches of 64 at the table's lr and epochs, and its
hidden layer 2 is drawn by 3-D metric MDS, coloured by context and by the blob's x and y
position. The theory's limits say what to look for: at a large initial scale (lazy)
representations keep the input's geometry, in which the two context units dominate, so
the contexts stay apart, each a sheet spanned by both coordinates; towards the rich limit
a pair's distance follows its target distance, so the irrelevant coordinate collapses
and points with equal targets meet, whatever their context.

The reference only shows the figure. rsd's metrics are its quantitative summary of that
qualitative figure, computed from the final layer-2 representations of all points, per
seed and then averaged over the seeds: the fraction of the representation's variance
explained by the context (between-context over total sum of squares), the R² of least-
squares linear read-outs (with intercept) of the blob's x and of its y position, and the
angle between the two read-out weight vectors; and, because read-outs from 100 dimensions
are near perfect in every regime, the fractions of the representation's variance
explained linearly by each point's target and, within a context, by the irrelevant
coordinate.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import jax
import numpy as np

from .._validation import check_int_range, check_real
from .. import data, training
from ..sweeps import run_unit
from . import _common as c

__all__ = ["Config", "Result", "RegimeResult", "run", "run_regime", "plot", "metrics", "arrays",
           "summary", "describe", "blob_labels", "embed", "representation_metrics", "regime_metrics",
           "REGIMES"]

REGIMES = {"high": "high_init", "low": "low_init", "very_low": "vlow_init"}
"""rsd's regime names and the rows of the reference's "orthogonal" table they train."""


@dataclass(frozen=True)
class Config:
    """Which regimes to train and how.

    ``quirks`` True (default) trains leaky_relu as the reference notebook does (it never
    passes the table's activation); False trains the table's tanh. Minibatches of 64,
    reshuffled every epoch, either way: that is the reference's protocol. ``n_centers``:
    blob centres per axis (30: 1,800 points); ``epoch_fraction``: the fraction of the
    table's epochs trained (rounded up); ``width``/``depth`` None = the table's (100, 4).
    ``mds_points``: the number of points (a seeded random subset, the same in every
    regime) embedded by MDS, None = all; the metrics always use all points.
    """

    regimes: tuple[str, ...] = tuple(REGIMES)
    seeds: int = 4
    quirks: bool = True
    n_centers: int = 30
    epoch_fraction: float = 1.0
    width: int | None = None
    depth: int | None = None
    mds_points: int | None = None
    mds_seed: int = 0

    def __post_init__(self):
        c.check_rows("regimes", self.regimes, tuple(REGIMES))
        check_int_range("seeds", self.seeds, 1)
        if not isinstance(self.quirks, bool):
            raise ValueError(f"quirks must be True or False; got {self.quirks!r}.")
        check_int_range("n_centers", self.n_centers, 2)
        check_real("epoch_fraction", self.epoch_fraction, lo=0.0, hi=1.0, lo_open=True)
        if self.width is not None:
            check_int_range("width", self.width, 1)
        if self.depth is not None:
            check_int_range("depth", self.depth, 3)  # the recorded layer is hidden layer 2
        if self.mds_points is not None:
            check_int_range("mds_points", self.mds_points, 4)
        check_int_range("mds_seed", self.mds_seed, 0, 2**32 - 1)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        if size in ("paper", "cpu"):
            return cls()
        if size == "tiny":
            return cls(seeds=2, n_centers=6, epoch_fraction=0.02, width=16)
        return cls(**_QUICK)

    @property
    def n_points(self) -> int:
        return 2 * self.n_centers**2

    def setting(self, regime: str) -> training.Setting:
        """The regime's setting: table lr, minibatches of 64, ⌈epoch_fraction·n_epochs⌉ epochs."""
        row = REGIMES[regime]
        s = training.Setting.from_paper("orthogonal", row, quirks=True, n_train=self.n_points)
        table = c.paper_row("orthogonal", row)
        changes = {"steps": self.epochs(regime) * self.steps_per_epoch}
        if not self.quirks:
            changes.update(activation=table.nonlinearity, name=f"orthogonal/{row}+minibatches")
        if self.width is not None:
            changes["width"] = self.width
        if self.depth is not None:
            changes["depth"] = self.depth
        return s.replace(**changes)

    def epochs(self, regime: str) -> int:
        table = c.paper_row("orthogonal", REGIMES[regime]).n_epochs
        return max(1, int(np.ceil(round(self.epoch_fraction * table, 9))))

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_points // 64)


# Quick (measured on the 2-core CPU, ~1.5 min): the full data and every epoch of the table
# (fewer epochs leave the very-low-scale network on its initial plateau), two seeds; MDS
# on a 600-point subset (~3 s a regime; all 1,800 points take ~11 s).
_QUICK = dict(seeds=2, mds_points=600)


@dataclass(frozen=True)
class RegimeResult:
    """One regime's seeds: the final layer-2 representations [S, n, P], the per-epoch
    recorded ½·MSE on all points [S, E] at ``record_steps``, whether each seed trained
    without diverging, and the MDS embedding [m, 3] of the first such seed."""

    regime: str
    setting: training.Setting
    hidden: np.ndarray
    loss: np.ndarray
    record_steps: np.ndarray
    trained: np.ndarray
    mds: np.ndarray
    mds_seed_index: int
    measures: dict


@dataclass(frozen=True)
class Result:
    config: Config
    regimes: tuple[RegimeResult, ...]
    context: np.ndarray  # [n] 0: report x, 1: report y
    x_position: np.ndarray  # [n] the blob's centre x
    y_position: np.ndarray  # [n]
    mds_index: np.ndarray  # [m] the points embedded by MDS


def blob_labels(x, y, n_centers: int):
    """(context [n], blob x [n], blob y [n]) of ``rsd.data.context_blobs`` data: rows i and
    i + n² show the same blob; the first half asks for its x (target μx), the second for
    its y (target μy)."""
    half = n_centers**2
    y = np.asarray(y, float)[:, 0]
    context = np.asarray(x, float)[:, -1].astype(int)
    return context, np.concatenate([y[:half], y[:half]]), np.concatenate([y[half:], y[half:]])


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    """Train every regime's seeds on the context blobs; summarize and embed the final layer-2
    representations (``upstream`` is not used)."""
    del upstream
    x, y = data.context_blobs(n_centers=config.n_centers)
    context, x_pos, y_pos = blob_labels(x, y, config.n_centers)
    mds_index = _mds_subset(config)
    regimes = []
    for regime in c.progress_bar(config.regimes, desc="context regimes", enabled=progress):
        regimes.append(run_unit(store, f"regime={regime}",
                                lambda: run_regime(config, regime, x, y, context, x_pos, y_pos, mds_index)))
    return Result(config=config, regimes=tuple(regimes), context=context, x_position=x_pos,
                  y_position=y_pos, mds_index=mds_index)


def _mds_subset(config):
    n = config.n_points
    if config.mds_points is None or config.mds_points >= n:
        return np.arange(n)
    rng = np.random.default_rng(config.mds_seed)
    return np.sort(rng.choice(n, config.mds_points, replace=False))


def run_regime(config, regime, x, y, context, x_pos, y_pos, mds_index) -> RegimeResult:
    """Train one regime's seeds (loss recorded once an epoch), take every point's final
    layer-2 representation, its measures per trained seed and the first seed's MDS."""
    setting = config.setting(regime)
    layer = setting.layers[0]
    # The loss on all points recorded once an epoch, not every step (that would cost more
    # than the training itself).
    rec = training.train(setting, x, y, seeds=range(config.seeds), return_params=True,
                         record_every=config.steps_per_epoch)
    network = setting.network(x.shape[1], y.shape[1])
    hidden = np.asarray(jax.vmap(lambda p: network.apply(p, x, train=False)[1][layer])(rec.params))
    trained = (np.asarray(rec.status) == training.Status.OK) & np.all(np.isfinite(hidden), axis=(1, 2))
    steps, loss = np.asarray(rec.record_steps), np.asarray(rec.loss)
    measures = {name: np.full(config.seeds, np.nan) for name in _MEASURES}
    for s in np.flatnonzero(trained):
        for name, value in representation_metrics(hidden[s], context, x_pos, y_pos).items():
            measures[name][s] = value
    first = np.flatnonzero(trained)
    mds = embed(hidden[first[0]][mds_index], seed=config.mds_seed) if first.size else \
        np.full((mds_index.size, 3), np.nan)
    return RegimeResult(regime=regime, setting=setting, hidden=hidden, loss=loss, record_steps=steps,
                        trained=trained, mds=mds, mds_seed_index=int(first[0]) if first.size else -1,
                        measures=measures)


_MEASURES = ("context_variance_fraction", "x_readout_r2", "y_readout_r2", "xy_angle_deg",
             "target_variance_fraction", "irrelevant_variance_fraction")


def representation_metrics(hidden, context, x_position, y_position) -> dict[str, float]:
    """Summary of one representation ``hidden`` [n, P] (float64 on the host).

    * context_variance_fraction: Σ_c n_c·||m_c − m||² / Σ_i ||h_i − m||² (m the mean, m_c
      the context means);
    * x_readout_r2, y_readout_r2: R² = 1 − SS_res/SS_tot of the least-squares fit
      t ≈ h·w + b of the blob's x (y) position t over all points;
    * xy_angle_deg: the angle between w_x and w_y in degrees (0–180). With a rank-deficient
      representation the minimum-norm w (the intercept unpenalized) is used;
    * target_variance_fraction: the fraction of the variance of h explained by a linear
      function a·t + b of the point's target t (its context's coordinate);
    * irrelevant_variance_fraction: the same for the other coordinate, within each
      context, averaged over the two contexts.

    ``context`` holds two labels; the smaller one asks for the x position.
    """
    h = np.asarray(hidden, float)
    context = np.asarray(context)
    mean = h.mean(0)
    centred = h - mean
    total = np.sum(centred**2)
    between = sum(np.sum(context == k) * np.sum((h[context == k].mean(0) - mean) ** 2)
                  for k in np.unique(context))
    out = {"context_variance_fraction": float(between / total) if total > 0 else float("nan")}
    weights = {}
    for name, target in (("x", x_position), ("y", y_position)):
        t = np.asarray(target, float) - np.mean(target)
        w = np.linalg.lstsq(centred, t, rcond=None)[0]
        residual = t - centred @ w
        out[f"{name}_readout_r2"] = float(1 - np.sum(residual**2) / np.sum(t**2))
        weights[name] = w
    norms = np.linalg.norm(weights["x"]) * np.linalg.norm(weights["y"])
    cos = np.dot(weights["x"], weights["y"]) / norms if norms > 0 else np.nan
    out["xy_angle_deg"] = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    # Read-outs from all P dimensions are near perfect in every regime (a trace of either
    # coordinate suffices); how much of the representation each feature occupies is what
    # the MDS figure shows.
    target = np.where(context == context.min(), x_position, y_position)
    out["target_variance_fraction"] = _explained(h, target)
    irrelevant = np.where(context == context.min(), y_position, x_position)
    out["irrelevant_variance_fraction"] = float(np.mean(
        [_explained(h[context == k], irrelevant[context == k]) for k in np.unique(context)]))
    return out


def _explained(h, t) -> float:
    """Fraction of the variance of ``h`` [n, P] explained by a least-squares map a·t + b of the scalar ``t`` [n]."""
    hc = h - h.mean(0)
    tc = np.asarray(t, float) - np.mean(t)
    denom, tt = np.sum(hc**2), np.dot(tc, tc)
    if denom == 0 or tt == 0:
        return float("nan")
    a = tc @ hc / tt
    return float(1 - np.sum((hc - np.outer(tc, a)) ** 2) / denom)


def embed(points, *, seed: int = 0) -> np.ndarray:
    """3-D metric MDS (scikit-learn's SMACOF) of ``points`` [m, P] from their Euclidean distances."""
    from sklearn.manifold import MDS

    p = np.asarray(points, float)
    sq = np.sum(p * p, 1)
    dist = np.sqrt(np.clip(sq[:, None] + sq[None] - 2 * p @ p.T, 0.0, None))
    np.fill_diagonal(dist, 0.0)
    dist = 0.5 * (dist + dist.T)
    params = inspect.signature(MDS).parameters
    if "metric_mds" in params:  # scikit-learn >= 1.8 renamed the arguments
        mds = MDS(n_components=3, metric_mds=True, metric="precomputed", init="random", n_init=1,
                  random_state=seed)
    else:
        mds = MDS(n_components=3, metric=True, dissimilarity="precomputed", n_init=1, random_state=seed)
    return mds.fit_transform(dist)


def regime_metrics(r: RegimeResult) -> dict[str, float]:
    """Each measure's plain mean over the seeds that trained (finite values)."""
    out = {}
    for name in _MEASURES:
        values = r.measures[name][np.isfinite(r.measures[name])]
        out[name] = float(values.mean()) if values.size else float("nan")
    final = r.loss[r.trained, -1]
    out["final_loss"] = float(final.mean()) if final.size else float("nan")
    out["seeds_used"] = int(r.trained.sum())
    return out


def metrics(result: Result) -> dict[str, float]:
    """The metrics file: "<regime>/<name>" numbers (see ``regime_metrics``)."""
    return {f"{r.regime}/{k}": v for r in result.regimes for k, v in regime_metrics(r).items()}


def arrays(result: Result) -> dict[str, np.ndarray]:
    """Everything the metrics and figures are computed from, for ``result.npz``."""
    out = {"context": result.context, "x_position": result.x_position,
           "y_position": result.y_position, "mds_index": result.mds_index}
    for r in result.regimes:
        p = r.regime + "/"
        out.update({p + "hidden": r.hidden.astype(np.float32), p + "loss": r.loss.astype(np.float32),
                    p + "record_steps": r.record_steps, p + "trained": r.trained, p + "mds": r.mds,
                    p + "mds_seed_index": np.array(r.mds_seed_index)})
        out.update({p + name: values for name, values in r.measures.items()})
    return out


def summary(result: Result) -> str:
    """A few lines of text: one per regime."""
    lines = [f"{'regime':>9} {'seeds':>5} {'context variance':>17} {'target variance':>16} "
             f"{'irrelevant variance':>20} {'x read-out R²':>14} {'y read-out R²':>14} {'x-y angle':>10} "
             f"{'final loss':>11}"]
    for r in result.regimes:
        m = regime_metrics(r)
        lines.append(f"{r.regime:>9} {m['seeds_used']:>2}/{r.trained.size:<2} "
                     f"{m['context_variance_fraction']:>17.4f} {m['target_variance_fraction']:>16.4f} "
                     f"{m['irrelevant_variance_fraction']:>20.4f} {m['x_readout_r2']:>14.4f} "
                     f"{m['y_readout_r2']:>14.4f} {m['xy_angle_deg']:>9.1f}° {m['final_loss']:>11.3g}")
    return "\n".join(lines)


def describe(config: Config) -> str:
    """What is run, for the report: sizes, quirks, data and how metrics average."""
    s = config.setting(config.regimes[0])
    act = ("quirk on: leaky_relu, as the reference trains (the table says tanh)" if config.quirks
           else "quirk off: the table's tanh")
    epochs = ", ".join(f"{r} {config.epochs(r)}" for r in config.regimes)
    regimes = ", ".join(f"{r} (gain {c.paper_row('orthogonal', REGIMES[r]).gain:g})" for r in config.regimes)
    table = "" if config.epoch_fraction == 1 else f" ({config.epoch_fraction:g} of the table's)"
    size = f"width {s.width}, depth {s.depth}" + ("" if (config.width, config.depth) == (None, None)
                                                  else " (the table: 100, 4)")
    mds = ("all points" if config.mds_points is None or config.mds_points >= config.n_points
           else f"a seeded random {config.mds_points} of the {config.n_points} points")
    return (f"Data: context blobs, {config.n_centers} × {config.n_centers} centres × 2 contexts = "
            f"{config.n_points} points{'' if config.n_centers == 30 else ' (the reference: 30 × 30)'}. "
            f"Regimes {regimes}; "
            f"{config.seeds} seeds each, {size}, {act}; SGD at the table's lr on shuffled minibatches "
            f"of 64 ({config.steps_per_epoch} steps an epoch), epochs {epochs}{table}. Figure: 3-D "
            f"metric MDS of hidden layer 2 after training ({mds}, the first seed). Metrics: rsd's "
            "quantitative summary of the reference's qualitative figure, per seed from all points' "
            "layer-2 representations, then the plain mean over the seeds that trained.")


def plot(result: Result) -> dict:
    """The figures by name: one per regime and the training loss."""
    import matplotlib.pyplot as plt

    figs = {}
    idx = result.mds_index
    colourings = (("context", result.context[idx], "coolwarm"),
                  ("blob x position", result.x_position[idx], "viridis"),
                  ("blob y position", result.y_position[idx], "viridis"))
    for r in result.regimes:
        m = regime_metrics(r)
        fig = plt.figure(figsize=(10.5, 3.6), constrained_layout=True)
        for k, (name, colour, cmap) in enumerate(colourings):
            ax = fig.add_subplot(1, 3, k + 1, projection="3d")
            e = r.mds
            sc = ax.scatter(e[:, 0], e[:, 1], e[:, 2], c=colour, cmap=cmap, s=4, depthshade=False)
            ax.set_title(f"coloured by {name}", fontsize=8)
            ax.tick_params(labelsize=5)
            if k:
                fig.colorbar(sc, ax=ax, shrink=0.6)
        fig.suptitle(f"context blobs, {r.regime} initial scale (gain {r.setting.gain:g}): MDS of hidden "
                     f"layer 2; context variance {m['context_variance_fraction']:.2f}, read-out R² x "
                     f"{m['x_readout_r2']:.2f} y {m['y_readout_r2']:.2f}, angle {m['xy_angle_deg']:.0f}°",
                     fontsize=8)
        figs[r.regime] = fig

    fig, ax = plt.subplots(figsize=(5.5, 3.5), constrained_layout=True)
    for j, r in enumerate(result.regimes):
        epochs = r.record_steps / result.config.steps_per_epoch
        for k in np.flatnonzero(r.trained):
            ax.plot(epochs, r.loss[k], color=f"C{j}", lw=1, alpha=0.7,
                    label=r.regime if k == np.flatnonzero(r.trained)[0] else None)
    if any(np.any(r.loss[r.trained] > 0) for r in result.regimes):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("½·MSE on all points")
    ax.set_title("context blobs: training loss per seed (recorded once an epoch)", fontsize=9)
    ax.legend(fontsize=7)
    figs["loss"] = fig
    return figs


def workloads(config: Config) -> list:
    """The training programs of ``run(config)``, for ``rsd reproduce --dry-run``."""
    from ._estimate import Workload

    return [Workload(regime, config.setting(regime), config.seeds, 27, 1, n_data=config.n_points,
                     records=config.epochs(regime)) for regime in config.regimes]
