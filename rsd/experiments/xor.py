"""XOR: the two-point end state applied to every pair, against the trained networks' distances.

Per regime of the XOR table (rich, intermediate, lazy, shallow; the reference notebook XOR): train on
the four XOR points (full batch, the table's lr for n_epochs steps) and record the
pairwise squared distances of the table's hidden layer and of the output before the
first update and after the last. Each pair (i, j) is then the two-point problem of
``rsd.theory.final_distance``: its h∞ follows from that network's own initial h0, y0,
the pair's input and target distances, and the default two-point row's mean fitted
rates (the reference uses those for all four regimes). The figure shows √h∞ next to
the measured final distances, as the reference's does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .._validation import check_int_range, check_real
from .. import data, theory, training
from ..sweeps import run_unit
from . import _common as c
from . import two_points

__all__ = ["Config", "Result", "RegimeResult", "run", "run_regime", "plot", "metrics", "arrays",
           "summary", "describe", "needs", "per_seed", "regime_metrics", "same_over_different",
           "REGIMES", "LABELS"]

REGIMES = training.paper_names("xor")
"""The rows of the XOR table: rich, intermediate, lazy, shallow."""

LABELS = ("00", "01", "10", "11")
"""The four XOR inputs in ``rsd.data.xor``'s order."""

RATES_ROW = "default"


@dataclass(frozen=True)
class Config:
    """Which regimes to train and how.

    ``quirks`` True (default) trains as the reference notebook does: relu and the mean
    squared error without the ½, whatever the table says; False trains the table's
    activation (leaky_relu) on ½·MSE. The predicted end state depends on the rates only
    through η_h/η_y, so the loss's factor 2 does not enter the prediction.
    ``width`` caps the width (None = the table's 500); ``depth`` replaces the depth of
    the deep regimes (None = the table's 20; the shallow regime keeps its one hidden
    layer) with the recorded layer kept at the same relative position; ``steps`` None =
    the table's n_epochs. Rates: ``eta_h``/``eta_y`` when both are given, else the
    default row's mean rates from the ``two-points`` configuration of size
    ``rates_size`` (reused from the output folder when it is there, else fitted here for
    the default row alone). The metrics average over the seeds that fitted XOR: no
    divergence and a final ½·MSE at most ``max_final_loss`` (the two-point experiments'
    threshold; the end state assumes a perfect fit).
    """

    regimes: tuple[str, ...] = REGIMES
    seeds: int = 10
    quirks: bool = True
    width: int | None = None
    depth: int | None = None
    steps: int | None = None
    rates_size: str = "paper"
    eta_h: float | None = None
    eta_y: float | None = None
    max_final_loss: float = 1e-2

    def __post_init__(self):
        c.check_rows("regimes", self.regimes, REGIMES)
        check_int_range("seeds", self.seeds, 1)
        if not isinstance(self.quirks, bool):
            raise ValueError(f"quirks must be True or False; got {self.quirks!r}.")
        for name in ("width", "depth"):
            if getattr(self, name) is not None:
                check_int_range(name, getattr(self, name), 1)
        if self.steps is not None:
            check_int_range("steps", self.steps, 1)
        c.check_size(self.rates_size)
        check_real("max_final_loss", self.max_final_loss, lo=0.0, lo_open=True)
        given = [getattr(self, name) is not None for name in ("eta_h", "eta_y")]
        if any(given) and not all(given):
            raise ValueError("eta_h and eta_y must be given together (or both None: rates from "
                             f"two-points); got eta_h={self.eta_h!r}, eta_y={self.eta_y!r}.")
        if all(given):
            for name in ("eta_h", "eta_y"):
                check_real(name, getattr(self, name), lo=0.0, lo_open=True)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        if size == "paper":
            return cls()
        if size == "cpu":
            return cls(seeds=4, rates_size="cpu")
        if size == "tiny":
            # Tiny networks do not all fit XOR in a few hundred steps (the lazy row's lr is
            # tuned for width 500): every non-diverged seed below ½·MSE 1 is kept, so the
            # whole pipeline runs on real numbers.
            return cls(seeds=2, width=16, depth=4, steps=1000, rates_size="tiny", max_final_loss=1.0)
        # Width 128 as two-points' quick size, so the reused default-row rates were fitted
        # at the width trained here; the table's depths and step counts.
        return cls(seeds=4, width=128, rates_size="quick")

    def setting(self, regime: str) -> training.Setting:
        """The regime's setting (quirks applied), resized by ``width``/``depth``/``steps``."""
        s = training.Setting.from_paper("xor", regime, quirks=self.quirks)
        changes = {}
        if self.width is not None and self.width < s.width:
            changes["width"] = self.width
        if self.depth is not None and s.depth > 1 and self.depth != s.depth:
            changes["depth"] = self.depth
            changes["layers"] = (c.scaled_layer(s.layers[0], s.depth, self.depth),)
        if self.steps is not None:
            changes["steps"] = self.steps
        return s.replace(**changes) if changes else s

    def rates_config(self) -> two_points.Config:
        """The ``two-points`` configuration whose default-row mean rates are used."""
        return two_points.Config.for_size(self.rates_size)


@dataclass(frozen=True)
class RegimeResult:
    """One regime's seeds: [S, 4, 4] squared-distance matrices at the recorded layer
    before training (``h0``) and after (``measured``), the output's before training
    (``y0``) and after (``measured_output``), the predicted end state, the recorded
    half-MSE loss [S, T] and whether each seed trained without diverging."""

    regime: str
    setting: training.Setting
    h0: np.ndarray
    y0: np.ndarray
    measured: np.ndarray
    measured_output: np.ndarray
    predicted: np.ndarray
    loss: np.ndarray
    trained: np.ndarray
    max_final_loss: float

    @property
    def used(self) -> np.ndarray:
        """[S] seeds in the metrics: trained without diverging, final loss at most
        ``max_final_loss``, finite matrices and prediction."""
        finite = np.all(np.isfinite(self.measured) & np.isfinite(self.predicted), axis=(1, 2))
        return self.trained & finite & (self.loss[:, -1] <= self.max_final_loss)


@dataclass(frozen=True)
class Result:
    config: Config
    regimes: tuple[RegimeResult, ...]
    eta_h: float
    eta_y: float
    rates_source: str
    dx2: np.ndarray  # [4, 4] squared input distances
    dy2: np.ndarray  # [4, 4] squared target distances

    @property
    def same_output(self) -> np.ndarray:
        """[4, 4] True where the two points' XOR targets are equal."""
        return self.dy2 == 0


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    """Train every regime's seeds and predict every pair's end state (rates first: from the
    configuration, from ``upstream["two-points"]``'s results table, or fitted here)."""
    (eta_h, eta_y), source = _rates(config, upstream, progress, store)
    x, y = data.xor()
    x64, y64 = np.asarray(x, float), np.asarray(y, float)
    dx2 = np.sum((x64[:, None] - x64[None]) ** 2, -1)
    dy2 = np.sum((y64[:, None] - y64[None]) ** 2, -1)
    regimes = []
    for regime in c.progress_bar(config.regimes, desc="xor regimes", enabled=progress):
        regimes.append(run_unit(store, f"regime={regime}",
                                lambda: run_regime(config, regime, x, y, dx2, dy2, eta_h, eta_y),
                                inputs=[float(eta_h), float(eta_y)]))
    return Result(config=config, regimes=tuple(regimes), eta_h=float(eta_h), eta_y=float(eta_y),
                  rates_source=source, dx2=dx2, dy2=dy2)


def _rates(config, upstream, progress, store=None):
    if config.eta_h is not None:
        return (config.eta_h, config.eta_y), "given in the configuration"
    if upstream and "two-points" in upstream:
        rates = two_points.rates_from_table(upstream["two-points"])
        if RATES_ROW in rates:
            return rates[RATES_ROW], f"two-points ({config.rates_size}) results table in the output folder"
    own = dataclasses.replace(config.rates_config(), rows=(RATES_ROW,))
    result = two_points.run(own, progress=progress, store=store)
    return two_points.rates(result)[RATES_ROW], f"two-points ({config.rates_size}, default row) fitted here"


def run_regime(config: Config, regime: str, x, y, dx2, dy2, eta_h, eta_y) -> RegimeResult:
    """Train one regime's seeds (full batch), record the layer's and the output's pairwise
    squared distances at steps 0 and ``steps`` (after the last update), predict h∞."""
    setting = config.setting(regime)
    steps = setting.steps
    rec = training.train(setting, x, y, seeds=range(config.seeds), tracked=x,
                         matrix_steps=(0, steps), matrix_layers=setting.layers)
    hidden = np.asarray(rec.hidden_matrices, float)[:, :, 0]  # [S, 2, 4, 4]
    output = np.asarray(rec.output_matrices, float)  # [S, 2, 4, 4]
    h0, measured = hidden[:, 0], hidden[:, 1]
    y0, measured_output = output[:, 0], output[:, 1]
    trained = np.asarray(rec.status) == training.Status.OK
    predicted = np.stack([_predict(dx2, dy2, h0[s], y0[s], eta_h, eta_y)
                          for s in range(config.seeds)])
    return RegimeResult(regime=regime, setting=setting, h0=h0, y0=y0, measured=measured,
                        measured_output=measured_output, predicted=predicted,
                        loss=np.asarray(rec.loss), trained=trained,
                        max_final_loss=config.max_final_loss)


def _predict(dx2, dy2, h0, y0, eta_h, eta_y) -> np.ndarray:
    """Every pair's h∞ (``theory.predicted_distance_matrix``); NaN without usable rates or data."""
    usable = (np.isfinite(eta_h) and np.isfinite(eta_y) and eta_h > 0 and eta_y > 0
              and np.all(np.isfinite(h0)) and np.all(np.isfinite(y0)))
    if not usable:
        return np.full(dx2.shape, np.nan)
    # Symmetrized: the recorded float32 matrices can differ from their transposes in the
    # last bit, which the symmetry check tolerates but the prediction need not inherit.
    h0, y0 = 0.5 * (h0 + h0.T), 0.5 * (y0 + y0.T)
    return np.asarray(theory.predicted_distance_matrix(dx2, dy2, h0, y0, float(eta_h), float(eta_y)),
                      float)


def same_over_different(matrix, same) -> float:
    """Mean of ``matrix`` over the same-target pairs / its mean over the different-target pairs
    (strict upper triangle, i < j)."""
    i, j = np.triu_indices(matrix.shape[-1], k=1)
    values, same = np.asarray(matrix, float)[i, j], np.asarray(same, bool)[i, j]
    if not same.any() or same.all():
        return float("nan")
    different = values[~same].mean()
    return float(values[same].mean() / different) if different != 0 else float("nan")


def _upper(matrix):
    return matrix[np.triu_indices(matrix.shape[-1], k=1)]


def _mean_finite(values) -> float:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def per_seed(r: RegimeResult, same) -> dict[str, np.ndarray]:
    """Each seed's Pearson r (upper triangles of predicted h∞ and measured final h) and
    same/different ratios; NaN for the seeds not used (see ``RegimeResult.used``)."""
    s = r.measured.shape[0]
    out = {k: np.full(s, np.nan) for k in ("pearson_r", "same_over_different_measured",
                                            "same_over_different_predicted")}
    for k in np.flatnonzero(r.used):
        out["pearson_r"][k] = c.pearson_r(_upper(r.predicted[k]), _upper(r.measured[k]))
        out["same_over_different_measured"][k] = same_over_different(r.measured[k], same)
        out["same_over_different_predicted"][k] = same_over_different(r.predicted[k], same)
    return out


def regime_metrics(r: RegimeResult, same) -> dict[str, float]:
    """The per-seed values averaged (plain mean) over the used seeds where they are finite."""
    used = r.used
    out = {name: _mean_finite(values) for name, values in per_seed(r, same).items()}
    out["final_loss"] = _mean_finite(r.loss[used, -1]) if used.any() else float("nan")
    out["seeds_used"] = int(used.sum())
    return out


def metrics(result: Result) -> dict[str, float]:
    """The metrics file: "<regime>/<name>" numbers (see ``regime_metrics``)."""
    out = {f"{r.regime}/{key}": value for r in result.regimes
           for key, value in regime_metrics(r, result.same_output).items()}
    out["eta_h"], out["eta_y"] = result.eta_h, result.eta_y
    return out


def arrays(result: Result) -> dict[str, np.ndarray]:
    """Everything the metrics and figures are computed from, for ``result.npz``."""
    out = {"dx2": result.dx2, "dy2": result.dy2, "rates": np.array([result.eta_h, result.eta_y])}
    for r in result.regimes:
        p = r.regime + "/"
        out.update({p + "h0": r.h0, p + "y0": r.y0, p + "measured": r.measured,
                    p + "measured_output": r.measured_output, p + "predicted": r.predicted,
                    p + "loss": r.loss.astype(np.float32), p + "trained": r.trained,
                    p + "used": r.used, p + "layer": np.array(r.setting.layers[0])})
        for name, values in per_seed(r, result.same_output).items():
            out[p + name] = values
    return out


def summary(result: Result) -> str:
    """A few lines of text: one per regime."""
    lines = [f"rates: eta_h = {result.eta_h:.4g}, eta_y = {result.eta_y:.4g} ({result.rates_source})",
             f"{'regime':>13} {'seeds':>5} {'pearson r':>10} {'same/diff measured':>19} "
             f"{'same/diff predicted':>20} {'final loss':>11}"]
    for r in result.regimes:
        m = regime_metrics(r, result.same_output)
        lines.append(f"{r.regime:>13} {m['seeds_used']:>2}/{r.trained.size:<2} {m['pearson_r']:>10.4f} "
                     f"{m['same_over_different_measured']:>19.4f} "
                     f"{m['same_over_different_predicted']:>20.4f} {m['final_loss']:>11.3g}")
    return "\n".join(lines)


def describe(config: Config) -> str:
    """What is run, for the report: sizes, quirks, data and how metrics average."""
    s = config.setting(config.regimes[0])
    quirks = ("quirks on: relu and the MSE without ½, as the reference notebook trains" if config.quirks
              else "quirks off: the table's activation and ½·MSE")
    width = "the table's width (500)" if config.width is None else f"width capped at {config.width}"
    depth = "the table's depths (20; shallow 1)" if config.depth is None else \
        f"depth {config.depth} (shallow 1), the recorded layer moved in proportion"
    steps = "the table's n_epochs full-batch steps" if config.steps is None else f"{config.steps} steps"
    rates = (f"given rates η_h = {config.eta_h:g}, η_y = {config.eta_y:g}" if config.eta_h is not None else
             f"the default row's mean fitted rates from two-points at its {config.rates_size} size "
             "(reused from the output folder when there)")
    return (f"{len(config.regimes)} regimes of the XOR table ({', '.join(config.regimes)}), "
            f"{config.seeds} seeds each, {width}, {depth}, SGD at the table's lr for {steps} "
            f"(e.g. {s.steps} for {config.regimes[0]}); {quirks}. Data: the four XOR points. "
            f"Prediction: every pair's h∞ from that network's initial pairwise h0, y0 at {rates}. "
            "Metrics: per seed over the 6 pairs i < j (squared distances), then the plain mean over "
            f"the seeds that fitted XOR (no divergence, final ½·MSE ≤ {config.max_final_loss:g}; "
            "counted as seeds_used); same-output pairs are those with equal XOR targets.")


def needs(config: Config) -> dict:
    """The ``two-points`` result whose default-row rates this experiment reuses when it is there."""
    return {} if config.eta_h is not None else {"two-points": config.rates_config()}


def plot(result: Result) -> dict:
    """The figures by name: one per regime and the training loss."""
    import matplotlib.pyplot as plt

    figs = {}
    same = result.same_output
    for r in result.regimes:
        used = r.used
        m = regime_metrics(r, same)
        fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.0), constrained_layout=True)
        if used.any():
            panels = (("theory √h∞", np.sqrt(np.clip(r.predicted[used], 0, None)).mean(0)),
                      ("network, final distance", np.sqrt(np.clip(r.measured[used], 0, None)).mean(0)))
        else:
            panels = (("theory √h∞ (no usable seed)", np.full((4, 4), np.nan)),
                      ("network (no usable seed)", np.full((4, 4), np.nan)))
        for ax, (title, matrix) in zip(axes, panels):
            im = ax.imshow(matrix, cmap="viridis")
            ax.set_xticks(range(4), LABELS)
            ax.set_yticks(range(4), LABELS)
            ax.set_title(title, fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8)
        fig.suptitle(f"XOR {r.regime}: mean over {int(used.sum())} seeds; r = {m['pearson_r']:.3f}, "
                     f"same/diff {m['same_over_different_measured']:.3f} (theory "
                     f"{m['same_over_different_predicted']:.3f})", fontsize=8)
        figs[r.regime] = fig

    fig, ax = plt.subplots(figsize=(5.5, 3.5), constrained_layout=True)
    for j, r in enumerate(result.regimes):
        for k in np.flatnonzero(r.trained):
            ax.plot(np.arange(r.loss.shape[1]), r.loss[k], color=f"C{j}", lw=1, alpha=0.6,
                    label=r.regime if k == np.flatnonzero(r.trained)[0] else None)
    if any(np.any(r.loss[r.trained] > 0) for r in result.regimes):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("½·MSE on the four points")
    ax.set_title("XOR training loss per seed", fontsize=9)
    ax.legend(fontsize=7)
    figs["loss"] = fig
    return figs


def workloads(config: Config) -> list:
    """The training programs of ``run(config)``, for ``rsd reproduce --dry-run`` (the
    default-row rates are reused from two-points)."""
    from ._estimate import Workload

    return [Workload(regime, config.setting(regime), config.seeds, 2, 1, n_data=4) for regime in config.regimes]
