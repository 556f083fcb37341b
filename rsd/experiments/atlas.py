"""The universality atlas: where does the two-point theory describe a network?

One sweep (:mod:`rsd.sweeps`) over width × depth × activation × gain on the two-point
task; every (cell, seed) is trained, and (η_h, η_y) are fitted at the middle hidden
layer. The atlas draws, per activation and gain, a width × depth heat map of how well
the theory fits (the median over seeds of min(R²_h, R²_y, R²_w)) and one of how the
fitted rates' ratio log10(η_h/η_y) moves.

Learning rates per cell follow the paper's two-point table, which lowers lr as the gain
grows (a gain sweep at one lr diverges or stalls): ``paper_lr(activation, gain, depth)``
anchors each activation at its own row's (gain, lr); for the positively homogeneous
activations (leaky_relu, relu, linear), whose signal scales as g^depth, it moves with
the gain as the table's gain rows do (depth 20, leaky_relu; log-linear in the gain),
taking a depth-L network at gain g as a depth-20 one at the same total scale
(g_eff = g^(L/20)); saturating activations (tanh, elu, silu) keep their row's lr. This is
rsd's rule of thumb extrapolated from the table, not the paper's; cells it sends into
divergence are reported as such (``train_status``).

The sweep the experiment runs is ``spec(config)``; ``rsd/sweeps/examples/atlas.toml``
is that spec at the quick size (a test keeps them equal), so
``rsd sweep rsd/sweeps/examples/atlas.toml --out DIR`` runs the same atlas resumably.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .. import training
from .._validation import check_int_range
from . import _common as c

__all__ = ["Config", "Result", "run", "plot", "metrics", "arrays", "summary", "describe",
           "paper_lr", "spec", "spec_toml"]

_ANCHORS = {  # activation -> the 2-points row that sets its (gain, lr)
    "leaky_relu": "default", "relu": "relu", "tanh": "tanh", "elu": "elu", "silu": "swish",
    "none": "linear", "linear": "linear",
}
_HOMOGENEOUS = ("leaky_relu", "relu", "none", "linear")
_GAIN_ROWS = ("gain_0.9", "default", "gain_1.1", "gain_1.2", "gain_1.3", "gain_1.4", "gain_1.6")
_TABLE_DEPTH = 20


def paper_lr(activation: str, gain: float, depth: int) -> float:
    """rsd's per-step learning rate (the table's lr halved, as every two-point row) for a
    network of ``activation``, ``gain`` and ``depth``, by the rule in the module docstring."""
    if activation not in _ANCHORS:
        raise ValueError(f"activation must be one of {sorted(_ANCHORS)}; got {activation!r}.")
    check_int_range("depth", depth, 1)
    if not (isinstance(gain, (int, float)) and math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a finite number > 0; got {gain!r}.")
    rows = [c.paper_row("2_points", name) for name in _GAIN_ROWS]
    gains = np.array([r.gain for r in rows])
    log_lr = np.log10([r.lr for r in rows])

    def rule(g):  # log10 lr of the depth-20 leaky_relu rows, linear beyond the ends
        g = float(g)
        if g <= gains[0]:
            k = 0
        elif g >= gains[-1]:
            k = len(gains) - 2
        else:
            k = int(np.searchsorted(gains, g)) - 1
        slope = (log_lr[k + 1] - log_lr[k]) / (gains[k + 1] - gains[k])
        return log_lr[k] + slope * (g - gains[k])

    # The anchor row is a depth-20 network; a depth-L network at gain g has the total
    # scale g^L of a depth-20 network at gain g^(L/20).
    anchor = c.paper_row("2_points", _ANCHORS[activation])
    if activation not in _HOMOGENEOUS:
        return float(f"{anchor.lr / 2:.3g}")
    effective = gain ** (depth / _TABLE_DEPTH)
    log = math.log10(anchor.lr) + rule(effective) - rule(anchor.gain)
    return float(f"{10 ** log / 2:.3g}")


@dataclass(frozen=True)
class Config:
    """Axes of the atlas (every combination is a cell), seeds per cell, steps per run."""

    widths: tuple[int, ...] = (10, 30, 100, 300)
    depths: tuple[int, ...] = (4, 8)
    activations: tuple[str, ...] = ("leaky_relu", "tanh")
    gains: tuple[float, ...] = (0.9, 1.0, 1.1, 1.2)
    seeds: int = 4
    steps: int = 2000
    chunk_size: int = 64

    def __post_init__(self):
        for name in ("widths", "depths", "activations", "gains"):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not values or len(set(values)) != len(values):
                raise ValueError(f"{name} must be a non-empty list of distinct values; got {values!r}.")
        for w in self.widths:
            check_int_range("widths entries", w, 1)
        for d in self.depths:
            check_int_range("depths entries", d, 2)
        for a in self.activations:
            if a not in _ANCHORS:
                raise ValueError(f"activations entries must be among {sorted(_ANCHORS)}; got {a!r}.")
        for g in self.gains:
            if not (isinstance(g, (int, float)) and math.isfinite(g) and g > 0):
                raise ValueError(f"gains entries must be finite numbers > 0; got {g!r}.")
        check_int_range("seeds", self.seeds, 1)
        check_int_range("steps", self.steps, 3)
        check_int_range("chunk_size", self.chunk_size, 1)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        if size == "tiny":
            return cls(widths=(8,), depths=(3,), activations=("leaky_relu",), gains=(0.9, 1.1),
                       seeds=2, steps=300)
        if size == "paper":
            return cls(widths=(10, 30, 100, 300, 1000), depths=(4, 8, 12, 20),
                       activations=("leaky_relu", "relu", "tanh", "elu", "silu"),
                       gains=(0.9, 1.0, 1.1, 1.2, 1.3), seeds=16, steps=6000, chunk_size=256)
        return cls()


def spec(config: Config) -> dict:
    """The sweep spec (the dict ``rsd.sweeps.parse_spec`` reads) of the atlas."""
    combos = []
    for activation in config.activations:
        for depth in config.depths:
            for gain in config.gains:
                combos.append([activation, depth, [depth // 2], float(gain),
                               paper_lr(activation, float(gain), depth)])
    return {
        "base": {"table": "2_points", "row": "default"},
        "seeds": config.seeds,
        "steps": config.steps,
        "grid": {"width": list(config.widths), "activation+depth+layers+gain+lr": combos},
        "fit": {"rates": True},
        "run": {"chunk_size": config.chunk_size},
    }


def spec_toml(config: Config) -> str:
    """:func:`spec` as TOML text (what ``rsd/sweeps/examples/atlas.toml`` holds)."""
    s = spec(config)

    def value(v):
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    rows = ",\n".join(f"    {value(row)}" for row in s["grid"]["activation+depth+layers+gain+lr"])
    return (
        "# The universality atlas (rsd run atlas --quick runs the same sweep and draws it).\n"
        "# Written by rsd.experiments.atlas.spec_toml(Config.for_size('quick')); the learning\n"
        "# rate of each (activation, depth, gain) follows atlas.paper_lr, and each depth\n"
        "# records its middle hidden layer.\n"
        f'base = {{ table = "2_points", row = "default" }}\n'
        f"seeds = {s['seeds']}\n"
        f"steps = {s['steps']}\n\n"
        "[grid]\n"
        f"width = {value(s['grid']['width'])}\n"
        '"activation+depth+layers+gain+lr" = [\n' + rows + ",\n]\n\n"
        "[fit]\nrates = true\n\n"
        f"[run]\nchunk_size = {s['run']['chunk_size']}\n"
    )


@dataclass(frozen=True)
class Result:
    config: Config
    table: dict  # column name -> numpy array, one row per (cell, seed)
    seconds: float

    def cell_grid(self, column: str, reduce=None) -> np.ndarray:
        """[activation, gain, depth, width] medians over each cell's trained seeds of
        ``column`` (or of ``reduce(table)``, an array per row)."""
        cfg = self.config
        values = reduce(self.table) if reduce is not None else self.table[column]
        ok = self.table["train_status"] == training.Status.OK
        out = np.full((len(cfg.activations), len(cfg.gains), len(cfg.depths), len(cfg.widths)), np.nan)
        for a, act in enumerate(cfg.activations):
            for g, gain in enumerate(cfg.gains):
                for d, depth in enumerate(cfg.depths):
                    for w, width in enumerate(cfg.widths):
                        rows = ok & (self.table["activation"] == act) & \
                            np.isclose(self.table["gain"], gain) & (self.table["depth"] == depth) & \
                            (self.table["width"] == width)
                        out[a, g, d, w] = c.median_or_nan(values[rows])
        return out

    def fit_r2(self) -> np.ndarray:
        """Per row: min(R²_h, R²_y, R²_w) (NaN where not fitted)."""
        return np.min(np.stack([self.table["r2_h"], self.table["r2_y"], self.table["r2_w"]]), axis=0)


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    del upstream
    start = time.perf_counter()
    _, columns, _ = c.sweep_results(spec(config), store, progress=progress, trajectories=False)
    seconds = time.perf_counter() - start
    columns["layer"] = np.array([int(v[0]) for v in columns.pop("layers")])
    columns["activation"] = columns["activation"].astype(str)
    return Result(config=config, table=columns, seconds=seconds)


def _key(act, gain, depth, width):
    return f"{act}/g{gain:g}/L{depth}/P{width}"


def metrics(result: Result) -> dict[str, float]:
    cfg = result.config
    r2 = result.cell_grid("fit_r2", reduce=lambda t: result.fit_r2())
    with np.errstate(all="ignore"):
        ratio = result.cell_grid("ratio", reduce=lambda t: np.log10(t["eta_h"] / t["eta_y"]))
    ok = result.table["train_status"] == training.Status.OK
    out = {
        "cells": float(r2.size),
        "trained_fraction": float(np.mean(ok)),
        "median_fit_r2": c.median_or_nan(r2.ravel()),
        "cells_fit_r2_over_0.9": float(np.mean(r2 > 0.9)) if r2.size else float("nan"),
    }
    for a, act in enumerate(cfg.activations):
        for g, gain in enumerate(cfg.gains):
            for d, depth in enumerate(cfg.depths):
                for w, width in enumerate(cfg.widths):
                    key = _key(act, gain, depth, width)
                    out[f"fit_r2/{key}"] = float(r2[a, g, d, w])
                    out[f"log10_eta_ratio/{key}"] = float(ratio[a, g, d, w])
    # How the ratio moves with width (the rich-to-lazy axis): the median slope of
    # log10(η_h/η_y) against log10(width) over the other axes.
    if len(cfg.widths) > 1:
        slopes = []
        logw = np.log10(np.asarray(cfg.widths, float))
        for row in ratio.reshape(-1, len(cfg.widths)):
            keep = np.isfinite(row)
            if keep.sum() >= 2:
                slopes.append(np.polyfit(logw[keep], row[keep], 1)[0])
        out["eta_ratio_width_slope"] = c.median_or_nan(np.asarray(slopes))
    return out


def arrays(result: Result) -> dict[str, np.ndarray]:
    out = {}
    for name, values in result.table.items():
        out[name] = values.astype("U") if values.dtype.kind in "OU" else values
    return out


def summary(result: Result) -> str:
    m = metrics(result)
    cfg = result.config
    r2 = result.cell_grid("fit_r2", reduce=lambda t: result.fit_r2())
    lines = [f"{int(m['cells'])} cells × {cfg.seeds} seeds in {result.seconds:.0f} s; "
             f"{m['trained_fraction']:.0%} of runs trained; median fit R² {m['median_fit_r2']:.3f}; "
             f"{m['cells_fit_r2_over_0.9']:.0%} of cells above 0.9"]
    for a, act in enumerate(cfg.activations):
        for g, gain in enumerate(cfg.gains):
            cells = "  ".join(f"L{depth}:" + " ".join(f"{v:5.2f}" for v in r2[a, g, d])
                              for d, depth in enumerate(cfg.depths))
            lines.append(f"{act:>10s} gain {gain:<4g} fit R² by width {list(cfg.widths)}: {cells}")
    return "\n".join(lines)


def describe(config: Config) -> str:
    return (f"two-point task (the default row's points), widths {list(config.widths)}, depths "
            f"{list(config.depths)}, activations {list(config.activations)}, gains "
            f"{list(config.gains)}, {config.seeds} seeds, {config.steps} SGD steps at a learning rate "
            "per (activation, gain, depth) from the table's gain rows (rsd's extrapolation; see the "
            "module docstring); fitted at each network's middle hidden layer. Fit quality is the "
            "median over seeds of min(R²_h, R²_y, R²_w). This atlas is rsd's own; the paper has none.")


def plot(result: Result) -> dict:
    import matplotlib.pyplot as plt

    cfg = result.config
    r2 = result.cell_grid("fit_r2", reduce=lambda t: result.fit_r2())
    with np.errstate(all="ignore"):
        ratio = result.cell_grid("ratio", reduce=lambda t: np.log10(t["eta_h"] / t["eta_y"]))
    figures = {}
    for name, grid, cmap, (lo, hi), label in (
            ("atlas_fit", r2, "viridis", (0.0, 1.0), "median min(R²_h, R²_y, R²_w)"),
            ("atlas_rates", ratio, "coolwarm", _range(ratio), "median log10(η_h / η_y)")):
        rows, cols = len(cfg.activations), len(cfg.gains)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 1, 2.2 * rows + 0.6),
                                 squeeze=False, constrained_layout=True)
        image = None
        for a, act in enumerate(cfg.activations):
            for g, gain in enumerate(cfg.gains):
                ax = axes[a, g]
                image = ax.imshow(grid[a, g], origin="lower", cmap=cmap, vmin=lo, vmax=hi,
                                  aspect="auto")
                for d in range(len(cfg.depths)):
                    for w in range(len(cfg.widths)):
                        v = grid[a, g, d, w]
                        ax.text(w, d, "—" if not np.isfinite(v) else f"{v:.2f}", ha="center",
                                va="center", fontsize=7, color="w" if name == "atlas_fit" and v < 0.6
                                else "k")
                ax.set_xticks(range(len(cfg.widths)), [str(w) for w in cfg.widths], fontsize=7)
                ax.set_yticks(range(len(cfg.depths)), [str(d) for d in cfg.depths], fontsize=7)
                ax.set_title(f"{act}, gain {gain:g}", fontsize=8)
                if a == rows - 1:
                    ax.set_xlabel("width")
                if g == 0:
                    ax.set_ylabel("depth")
        fig.colorbar(image, ax=axes, label=label, shrink=0.8)
        fig.suptitle("universality atlas: " + label + " (— : no trained seed)", fontsize=9)
        figures[name] = fig
    return figures


def _range(grid):
    finite = grid[np.isfinite(grid)]
    if finite.size == 0:
        return (-1.0, 1.0)
    m = float(np.max(np.abs(finite - np.median(finite)))) or 1.0
    mid = float(np.median(finite))
    return (mid - m, mid + m)

