"""Is it the theory's equations that fit, or would any similar ODE? Four perturbed fields.

The default row's two-point trajectories (the two-point protocol: lr / 2, 2·n_epochs
steps) fitted with the true field and with each of four perturbed ones (the reference notebook 2_points_alternative):
(1) dy/dt doubled, (2) dh/dt doubled, (3) the sign of the η_h term of dw/dt flipped,
(4) the η_h term dropped from dy/dt. A perturbed field that fits worse at its best
rates than the true field supports the theory's specific form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int_range, check_real
from .. import sweeps, theory, training
from . import _common as c

__all__ = ["Config", "Result", "FIELDS", "spec", "run", "plot", "metrics", "arrays", "summary"]

REPORT_METRICS = ("kept", "seeds", "true_loss", "alt1_over_true", "alt2_over_true", "alt3_over_true",
                  "alt4_over_true", "true_r2_h")
"""The metrics the report's table shows (all are in ``metrics.json``)."""

FIELDS = (("true", theory.WeightedField()),
          ("alt1", theory.vector_field_dy_doubled),
          ("alt2", theory.vector_field_dh_doubled),
          ("alt3", theory.vector_field_dw_eta_h_flipped),
          ("alt4", theory.vector_field_dy_eta_h_dropped))
"""(name, field): the paper's field, then alternatives (1)–(4) in the paper's order. All
five are :class:`rsd.theory.WeightedField` instances (the true field: every weight 1, the
theory's :func:`rsd.theory.vector_field` term for term), so one compiled fit and one
compiled solve serve them all: the fields differ in their weights only, not in the
program that fits them."""

LABELS = {"true": "true field", "alt1": "(1) dy/dt doubled", "alt2": "(2) dh/dt doubled",
          "alt3": "(3) η_h term of dw/dt flipped", "alt4": "(4) η_h term of dy/dt dropped"}


@dataclass(frozen=True)
class Config:
    row: str = "default"
    seeds: int = 4
    width: int | None = 128
    depth: int | None = None
    steps: int | None = None
    max_final_loss: float = 1e-2

    def __post_init__(self):
        c.check_rows("row", (self.row,), training.paper_names("2_points"))
        check_int_range("seeds", self.seeds, 1)
        for name in ("width", "depth"):
            if getattr(self, name) is not None:
                check_int_range(name, getattr(self, name), 1)
        if self.steps is not None:
            check_int_range("steps", self.steps, 3)
        check_real("max_final_loss", self.max_final_loss, lo=0.0, lo_open=True)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        if size == "paper":
            return cls(seeds=50, width=None)
        if size == "cpu":
            return cls(seeds=4, width=None)
        if size == "tiny":
            return cls(seeds=2, width=16, depth=4, steps=2000)
        return cls()

    def setting(self) -> training.Setting:
        return c.two_point_setting(self.row, width=self.width, depth=self.depth, steps=self.steps)


@dataclass(frozen=True)
class Result:
    config: Config
    setting: training.Setting
    measured: np.ndarray  # [S, T, 3]
    kept: np.ndarray  # [S] trained, final loss small, every field's fit finite
    fits: dict  # name -> c.SeedFits
    t_plot: np.ndarray
    curves: dict  # name -> [S, P, 3] theory at that field's fitted rates


def _analysis(name: str) -> str:
    """The sweep analysis that fits with field ``name`` of :data:`FIELDS` (registered below)."""
    return f"alternatives_{name}"


for _name, _field in FIELDS:
    if _analysis(_name) not in sweeps.ANALYSES:
        sweeps.register_analysis(_analysis(_name), sweeps.rates_analysis(_field, prefix=f"{_name}_"))


def spec(config: Config) -> dict:
    """The experiment as a sweep spec (the dict :func:`rsd.sweeps.parse_spec` reads): the
    row's seeds on its two points in one chunk with the full series kept, and per seed one
    fit of (η_h, η_y) with each field of :data:`FIELDS` (analyses ``alternatives_true``,
    ``alternatives_alt1`` … ``alternatives_alt4``, columns ``{field}_eta_h`` …)."""
    return c.setting_spec(config.setting(), config.row, seeds=config.seeds,
                          analyses=[_analysis(name) for name, _ in FIELDS])


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    """Run the sweep of :func:`spec` (in ``OUT/alternatives/sweep/`` under ``rsd run``,
    resumable), then the theory at each field's fitted rates."""
    del upstream
    setting = config.setting()
    _, table, series = c.sweep_results(spec(config), store, progress=progress)
    trained = np.asarray(table["train_status"]) == training.Status.OK
    loss = series["loss"]
    measured = c.series_measured(series)
    dx2, dy2 = c.pair_distances(setting)  # the values the sweep's fits used
    t_plot = c.subsample_times(setting.steps, 300)
    fits, curves = {}, {}
    for name, field in FIELDS:
        fits[name] = c.table_fits(table, prefix=f"{name}_")  # no η_ȳ fit: NaN, NOT_FITTED
        curves[name] = c.theory_curves(measured[:, 0], t_plot, fits[name].eta_h, fits[name].eta_y, dx2,
                                       dy2, vector_field=field)
    # Compare fields on the same seeds: those every field could fit at some rates.
    finite = np.all([np.isfinite(f.loss) for f in fits.values()], axis=0)
    kept = trained & (loss[:, -1] <= config.max_final_loss) & finite
    return Result(config=config, setting=setting, measured=measured, kept=kept, fits=fits,
                  t_plot=t_plot, curves=curves)


def metrics(result: Result) -> dict[str, float]:
    k = result.kept
    out = {"kept": int(k.sum()), "seeds": int(k.size)}
    true = result.fits["true"].loss[k]
    for name, _ in FIELDS[1:]:
        alt = result.fits[name].loss[k]
        # Total best-fit loss over the kept seeds, perturbed over true; and per seed.
        out[f"{name}_over_true"] = float(np.sum(alt) / np.sum(true)) if k.any() else float("nan")
        out[f"{name}_over_true_median_seed"] = c.median_or_nan(alt / true)
    out["true_loss"] = float(np.sum(true)) if k.any() else float("nan")
    for name, _ in FIELDS:
        out[f"{name}_r2_h"] = c.median_or_nan(result.fits[name].r2[k, 0])
    return out


def arrays(result: Result) -> dict[str, np.ndarray]:
    out = {"measured": result.measured.astype(np.float32), "kept": result.kept, "t_plot": result.t_plot}
    for name, f in result.fits.items():
        out.update({f"{name}/eta_h": f.eta_h, f"{name}/eta_y": f.eta_y, f"{name}/fit_loss": f.loss,
                    f"{name}/r2": f.r2, f"{name}/status": f.status,
                    f"{name}/theory": result.curves[name].astype(np.float32)})
    return out


def summary(result: Result) -> str:
    m = metrics(result)
    lines = [f"kept {m['kept']}/{m['seeds']} seeds; best-fit loss of each field over the true field's:"]
    for name, _ in FIELDS[1:]:
        lines.append(f"  {LABELS[name]:32s} {m[f'{name}_over_true']:10.3g}  "
                     f"(median per seed {m[f'{name}_over_true_median_seed']:.3g})")
    return "\n".join(lines)


def describe(config: Config) -> str:
    s = config.setting()
    return (f"row {config.row}, {config.seeds} seeds, width {s.width}, depth {s.depth}, SGD at lr "
            f"{s.lr:g} for {s.steps} steps; each field fitted to every seed (same fitting procedure); "
            "ratios are total best-fit loss over kept seeds, perturbed / true.")


def plot(result: Result) -> dict:
    import matplotlib.pyplot as plt

    seed = int(np.flatnonzero(result.kept)[0]) if result.kept.any() else 0
    fig, axes = plt.subplots(3, len(FIELDS), figsize=(3.3 * len(FIELDS), 7), sharex=True,
                             constrained_layout=True)
    t = np.arange(result.measured.shape[1])
    m = metrics(result)
    for j, (name, _) in enumerate(FIELDS):
        for k, q in enumerate("hyw"):
            ax = axes[k, j]
            ax.plot(t, result.measured[seed, :, k], color="k", lw=2, alpha=0.35, label="network")
            ax.plot(result.t_plot, result.curves[name][seed, :, k], color="C3", lw=1, ls="--",
                    label="fitted field")
            if j == 0:
                ax.set_ylabel(q)
            ax.tick_params(labelsize=6)
        ratio = "" if name == "true" else f"  loss ×{m[f'{name}_over_true']:.3g}"
        axes[0, j].set_title(f"{LABELS[name]}{ratio}", fontsize=8)
        axes[-1, j].set_xlabel("training step")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"seed {seed}: the network against each field at its best-fit rates", fontsize=9)
    return {"alternatives": fig}


def workloads(config: Config) -> list:
    """The training program of ``run(config)``, for ``rsd reproduce --dry-run``."""
    from ._estimate import Workload

    return [Workload("default", config.setting(), config.seeds, 1, 1, fits=config.seeds * len(FIELDS),
                     fit_programs=len(FIELDS))]
