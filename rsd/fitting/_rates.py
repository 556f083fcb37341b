"""Fits of the effective rates (η_h, η_y) of the 3-D theory to recorded trajectories.

The objective is the paper's: the sum over all recorded steps of the squared
residuals of h, y and w between the trajectory and the theory solved from the
trajectory's first point,

    L(η_h, η_y) = Σ_t (h(t) − ĥ(t))² + (y(t) − ŷ(t))² + (w(t) − ŵ(t))².

Algorithm, per trajectory (written for one and vmapped):

1. start: a linear least-squares estimate of the rates from the integrated vector
   field (the field is linear in the rates: z(t) − z(0) = η_h·∫A + η_y·∫B; module
   ``_initial``), refined by an n×n log-grid search around it: all grid points of all
   trajectories in one vmapped program, saved at a subsample of the steps, with a
   small step budget (grid points too stiff for it count as +inf) and in chunks
   ordered by total rate, so the stiff corner of the grid holds up only its chunk;
2. Levenberg–Marquardt in log-rates on that subsample, each residual weighted by
   the number of steps it stands for (so it approximates L), Jacobians by forward
   mode through the diffrax solve (2 parameters, thousands of residuals);
3. a few Levenberg–Marquardt steps on L itself over every step; the reported
   loss and R² are those of this last stage, i.e. over every step.

Every theory evaluation (grid, both stages, :func:`fit_objective`) is
:func:`rsd.theory.solve_trajectory`, the single-trajectory solve behind
:func:`rsd.theory.solve` (same stop rule, floor, step control and interpolation at
the recorded steps), in forward mode.

Failed solves are rejected trial points (masked with a double where), never NaNs.
"""

from __future__ import annotations

import enum
from typing import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._batching import bucket, chunk_width, chunked_vmap, pad_rows
from .._validation import (
    as_array,
    check_int_range,
    check_real,
    check_solver,
    check_tolerance,
    check_vector_field,
)
from ..theory import H_FLOOR, Status, default_tolerances, solve_trajectory, vector_field
from ._initial import _initial_rates
from ._inputs import _prepare
from ._lm import init_state, levenberg_marquardt

__all__ = ["FitStatus", "RateFit", "fit_rates", "fit_layers", "fit_objective"]


class FitStatus(enum.IntEnum):
    """Per-fit outcome (stored as int32 in ``status`` fields)."""

    OK = 0
    """Converged: the last step was below tolerance."""
    NOT_CONVERGED = 1
    """Ran out of iterations; the rates are the best point found."""
    SOLVER_FAILED = 2
    """The theory could not be solved over the whole trajectory at any rates tried
    (step budget spent, non-finite state or h reached 0); rates and loss are NaN/inf."""
    BAD_DATA = 3
    """This element's data are invalid, so it was not fitted: the trajectory holds
    non-finite values, h0 ≤ 0 or y0 < 0, or its dx2/dy2 are not finite with dx2 > 0,
    dy2 ≥ 0 (or, under jit, ``ts`` is not finite and strictly increasing). Rates
    NaN, loss inf. The other elements are fitted as if it were absent."""
    UNDETERMINED = 4
    """The data do not determine the rates: at the best point found, multiplying a
    rate by e changes the theory's trajectory by less than 10·rtol (the solve's
    relative tolerance) of the data's RMS value — e.g. a constant trajectory, or data
    resting at a fixed point, where the fit drifts to arbitrary rates. Rates NaN;
    loss and R² are those of the best point found."""
    NOT_FITTED = -1
    """Not fitted: the element's training diverged, or it was masked out before the fit
    (:func:`rsd.fitting.fit_rates_masked`; an experiment's seed, a sweep's element).
    Rates NaN."""
    SKIPPED = -2
    """Not fitted on purpose: a sweep whose spec says ``[fit] rates = false``."""


class RateFit(eqx.Module):
    """Result of :func:`fit_rates`; every field has the trajectories' leading shape.

    ``eta_h``, ``eta_y``: fitted rates (per training step). ``loss``: the objective
    L over all steps at the fitted rates. ``r2``: [..., 3] coefficient of
    determination 1 − SS_res/SS_tot of the h, y and w series (NaN for a constant
    series: one whose RMS deviation from its mean is at most 10·eps·max|series|,
    eps the dtype's machine epsilon, i.e. SS_tot ≤ T·(10·eps·max|x|)²).
    ``status``: :class:`FitStatus`. ``iterations``: Levenberg–Marquardt iterations,
    both stages together.
    """

    eta_h: jax.Array
    eta_y: jax.Array
    loss: jax.Array
    r2: jax.Array
    status: jax.Array
    iterations: jax.Array

    @property
    def ok(self):
        return self.status == FitStatus.OK


class _Config(eqx.Module):
    solver: diffrax.AbstractSolver = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    h_floor: float = eqx.field(static=True)
    # Not static: a field's arrays (a WeightedField's weights) are traced, so fields
    # that differ only in them share one compiled fit (eqx.filter_jit).
    field: Callable = vector_field


# ---------------------------------------------------------------------------
# The theory at a set of times, differentiable in forward mode.

def _theory(log_rates, z0, ts, dx2, dy2, cfg: _Config):
    """ẑ(ts) solved from z0 at ts[0] with rates exp(log_rates); returns (zs [T, 3], ok).

    :func:`rsd.theory.solve_trajectory` (also behind :func:`rsd.theory.solve`), in
    forward mode. Where the solve failed, zs is z0
    everywhere (finite, so no NaN leaks into gradients) and ok is False.
    """
    eta = jnp.exp(log_rates)
    out = solve_trajectory(z0, ts, (eta[0], eta[1], dx2, dy2), field=cfg.field, solver=cfg.solver,
                           rtol=cfg.rtol, atol=cfg.atol, max_steps=cfg.max_steps, h_floor=cfg.h_floor,
                           adjoint=diffrax.ForwardMode())
    ok = (out.status == Status.OK) & jnp.all(jnp.isfinite(out.zs))
    return jnp.where(ok, out.zs, z0), ok


def _residual_fn(data, ts, weights, dx2, dy2, cfg):
    """θ ↦ (√weight·(ẑ − z) flattened, ok) over the given times."""
    sw = jnp.sqrt(weights)[:, None]

    def fun(log_rates):
        zs, ok = _theory(log_rates, data[0], ts, dx2, dy2, cfg)
        return (sw * (zs - data)).ravel(), ok

    return fun


# ---------------------------------------------------------------------------
# One trajectory.

def _fit_times(n_times: int, n_fit: int):
    """Host: indices of the fitting subsample (half linear, half geometric, both ends)
    and the number of steps each stands for (weights summing to n_times)."""
    if n_times <= n_fit:
        return np.arange(n_times), np.ones(n_times)
    half = max(n_fit // 2, 2)
    lin = np.linspace(0, n_times - 1, half)
    geo = np.geomspace(1, n_times - 1, n_fit - half)
    idx = np.unique(np.concatenate([[0], np.round(lin), np.round(geo)]).astype(int))
    # Voronoi cells in step index: each sample stands for the steps nearest to it.
    edges = np.concatenate([[-0.5], 0.5 * (idx[1:] + idx[:-1]), [n_times - 0.5]])
    return idx, np.diff(edges)


def _grid_offsets(n: int, decades: float):
    if n == 1:
        return np.zeros((1, 2))
    g = np.linspace(-decades, decades, n) * np.log(10.0)
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


def _r2(resid, data):
    """1 − SS_res/SS_tot per series (axis 0 is time); NaN for a constant series.

    Constant: RMS deviation from the mean ≤ 10·eps·max|x| (a relative tolerance on
    SS_tot). Deviations are taken from the first value, so an exactly constant
    series gives SS_tot = 0 whatever the round-off of its mean.
    """
    ss_res = jnp.sum(resid * resid, axis=0)
    shifted = data - data[:1]
    dev = shifted - jnp.mean(shifted, axis=0)
    ss_tot = jnp.sum(dev * dev, axis=0)
    eps = jnp.finfo(data.dtype).eps
    scale = 10.0 * eps * jnp.max(jnp.abs(data), axis=0)
    varies = ss_tot > data.shape[0] * scale * scale
    safe = jnp.where(varies, ss_tot, 1.0)
    return jnp.where(varies, 1.0 - ss_res / safe, jnp.nan)


def _fit_one(data, ts, ts_ok, dx2, dy2, center, *, idx, weights, offsets, cfg, grid_cfg, max_iterations,
             polish_iterations, xtol, ftol):
    dtype = data.dtype
    valid = (jnp.all(jnp.isfinite(data)) & (data[0, 0] > 0) & (data[0, 1] >= 0)
             & jnp.isfinite(dx2) & (dx2 > 0) & jnp.isfinite(dy2) & (dy2 >= 0) & ts_ok)
    # Invalid elements are fitted on a stand-in resting at a fixed point (cheap) and masked.
    data = jnp.where(valid, data, jnp.array([1.0, 0.0, 0.0], dtype))
    dx2, dy2 = jnp.where(valid, dx2, 1.0), jnp.where(valid, dy2, 0.0)
    center = jnp.where(valid & jnp.isfinite(center) & (center > 0), center, 1.0)
    full = idx.shape[0] == data.shape[0]

    sub_data, sub_ts = data[idx], ts[idx]
    sub_w = jnp.asarray(weights, dtype)
    sub_fun = _residual_fn(sub_data, sub_ts, sub_w, dx2, dy2, cfg)

    # 1. log-grid around the center: all points in one vmapped solve.
    grid = jnp.log(center) + jnp.asarray(offsets, dtype)

    grid_fun = _residual_fn(sub_data, sub_ts, sub_w, dx2, dy2, grid_cfg)

    def grid_loss(theta):
        r, ok = grid_fun(theta)
        return jnp.where(ok, jnp.sum(r * r), jnp.inf)

    # Chunks of grid points in order of total rate: the stiff corner (both rates
    # large, many solver steps) then holds up only its own chunk of the vmapped solve.
    order = np.argsort(offsets.sum(-1), kind="stable")
    chunk = int(np.ceil(np.sqrt(len(order))))
    losses = lax.map(grid_loss, grid[order], batch_size=chunk)
    grid = grid[order]
    best = jnp.argmin(losses)
    # Grid points that need more than the grid's step budget (rates far too large
    # for the data's time scale) count as +inf; if all do, start at the center.
    theta0 = jnp.where(jnp.isfinite(losses[best]), grid[best], jnp.log(center))

    # 2. Levenberg–Marquardt on the weighted subsample.
    state = levenberg_marquardt(sub_fun, init_state(theta0, 3 * idx.shape[0]), max_iterations=max_iterations,
                                xtol=xtol, ftol=ftol)
    # 3. on every step (skipped when the subsample is every step).
    if not full:
        all_fun = _residual_fn(data, ts, jnp.ones(ts.shape, dtype), dx2, dy2, cfg)
        polish = levenberg_marquardt(all_fun, init_state(state.theta, 3 * ts.shape[0], mu0=1e-4),
                                     max_iterations=polish_iterations, xtol=xtol, ftol=ftol)
        iterations = state.iterations + polish.iterations
        converged = polish.converged
        state = polish
    else:
        iterations, converged = state.iterations, state.converged

    resid = state.residual.reshape(-1, 3)
    # A rate that barely moves the theory (a constant trajectory, data resting at a
    # fixed point) is not determined by the data, and the fit drifts to arbitrary
    # values: never report it. Sensitivity per unit log-rate, RMS over all residuals
    # (both stages weigh the residuals to sum over every step).
    sensitivity = jnp.sqrt(jnp.sum(state.jac * state.jac, axis=0) / (3 * ts.shape[0]))
    data_rms = jnp.sqrt(jnp.mean(data * data))
    identifiable = jnp.all(sensitivity > 10.0 * cfg.rtol * data_rms)
    status = jnp.where(~valid, FitStatus.BAD_DATA,
                       jnp.where(~state.ok, FitStatus.SOLVER_FAILED,
                                 jnp.where(~identifiable, FitStatus.UNDETERMINED,
                                           jnp.where(converged, FitStatus.OK,
                                                     FitStatus.NOT_CONVERGED))))
    good = status <= FitStatus.NOT_CONVERGED
    fitted = good | (status == FitStatus.UNDETERMINED)
    rates = jnp.where(good, jnp.exp(state.theta), jnp.nan)
    return RateFit(
        eta_h=rates[0], eta_y=rates[1],
        loss=jnp.where(fitted, state.loss, jnp.inf),
        r2=jnp.where(fitted, _r2(resid, data), jnp.nan),
        status=status.astype(jnp.int32),
        iterations=iterations,
    )


@eqx.filter_jit  # the Python numbers and cfg's functions are static, arrays traced
def _fit_batch(data, ts, dx2, dy2, init, *, n_fit, grid_points, grid_decades, cfg, grid_cfg,
               max_iterations, polish_iterations, chunk_size):
    idx, weights = _fit_times(data.shape[1], n_fit)
    offsets = _grid_offsets(grid_points, grid_decades)
    # Step (log-rate) and relative-gain tolerances; float32 cannot resolve the loss
    # much below 1e-5 relative over thousands of residuals.
    xtol, ftol = (1e-6, 1e-10) if data.dtype == jnp.float64 else (1e-4, 1e-5)
    # Under jit the host check of ts cannot run: bad times make every element BAD_DATA.
    ts_ok = jnp.all(jnp.isfinite(ts)) & jnp.all(jnp.diff(ts) > 0)
    ts = jnp.where(ts_ok, ts, jnp.arange(ts.shape[0], dtype=ts.dtype))

    def one(args):
        d, x2, y2, c = args
        usable = jnp.all(jnp.isfinite(c) & (c > 0))
        safe_c = jnp.where(usable, c, 1.0)
        center = jnp.where(usable, safe_c, _initial_rates(d, ts, x2, y2, cfg.field))
        return _fit_one(d, ts, ts_ok, x2, y2, center, idx=idx, weights=weights, offsets=offsets,
                        cfg=cfg, grid_cfg=grid_cfg, max_iterations=max_iterations,
                        polish_iterations=polish_iterations, xtol=xtol, ftol=ftol)

    return chunked_vmap(lambda *a: one(a), (data, dx2, dy2, init), chunk_size)


# ---------------------------------------------------------------------------
# Public entry points.

def fit_rates(
    h,
    y,
    w,
    dx2,
    dy2,
    *,
    ts=None,
    init=None,
    grid_points: int = 7,
    grid_decades: float = 1.5,
    grid_max_steps: int = 256,
    num_fit_times: int = 256,
    max_iterations: int = 50,
    polish_iterations: int = 8,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 4096,
    chunk_size: int = 256,
    vector_field=vector_field,
) -> RateFit:
    """Fit (η_h, η_y) of the 3-D theory to trajectories of (h, y, w), one fit per trajectory.

    Minimises L = Σ_t ||z(t) − ẑ(t; η_h, η_y)||² over every recorded step, with ẑ the
    theory solved from z(ts[0]) (time in training steps; rates per step).

    ``h``, ``y``, ``w``: [..., T] with time last; leading dimensions (seeds, layers,
    settings) broadcast together and against ``dx2`` and ``dy2``. ``ts`` defaults to
    0..T−1. ``init``: optional rates [..., 2] to center the grid on instead of the
    integrated-field estimate (``grid_points=1`` starts exactly there); elements
    whose ``init`` is not finite and > 0 (e.g. a failed earlier fit's NaN) use the
    estimate. The grid has
    ``grid_points``² log-spaced points spanning ±``grid_decades`` around the center,
    each solved with at most ``grid_max_steps`` steps (more: +inf);
    Levenberg–Marquardt then runs on ``num_fit_times`` sampled steps and finally on
    all of them. ``solver`` defaults to Tsit5 (explicit: the fitted trajectories are
    resolved by ~10²–10³ steps; pass ``diffrax.Kvaerno5()`` for stiff ones).
    Trajectories are fitted ``chunk_size`` at a time (bounds memory; each chunk
    iterates only as long as its own slowest fit; rounded down to a power of two,
    at least 2).

    Never raises on a trajectory the theory cannot fit, nor on invalid data of one
    element: see ``RateFit.status`` (``BAD_DATA`` for non-finite trajectories,
    h0 ≤ 0, y0 < 0, or array-valued dx2/dy2 out of range; the others are fitted
    exactly as without it). Options, ``ts`` and 0-d ``dx2``/``dy2`` are checked on the
    host and raise ``ValueError`` naming the argument. An empty batch returns empty
    results.

    Compilation and determinism: the batch is padded to a power of two (at least 2),
    so batch sizes in one bucket share one compiled program (the number of steps T
    is not bucketed: it fixes the fitting subsample, and one experiment records one
    T). The same call gives bitwise the same result; across batch sizes, positions
    in the batch and chunk sizes a fit agrees to round-off (bitwise on the CPUs
    tested; a few ulp of the residuals elsewhere, which the iteration can amplify up
    to its tolerance on a flat objective).

    ``vector_field``: the field fitted, any function ``(t, z, args) -> dz/dt`` with
    args = (eta_h, eta_y, dx2, dy2); default the theory's, see
    :data:`rsd.theory.perturbed_vector_fields` for the paper's alternatives. It is
    static (a new function compiles a new program; the same one reuses it). The grid's
    center (without ``init``): for the theory's field the integrated-feature estimate
    above; for another field the same least squares with the features A, B taken as
    the field at (η_h, η_y) = (1, 0) and (0, 1), valid when the field is linear in the
    rates (checked at the data: the field at (0, 0) vanishes and at (2, 3) equals
    2A + 3B); a field that fails the check starts the grid at 1/(time span) for both
    rates (then widen ``grid_decades`` or pass ``init``).

    Example:
        ```python
        from rsd import data, fitting, training

        setting = training.Setting.from_paper("2_points", "narrow").replace(
            width=16, depth=4, steps=1000, layers=(2,))
        x, y = data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim,
                               out_dim=setting.out_dim)
        run = training.train(setting, x, y, seeds=range(4))    # h: [4, 1000, 1]
        fit = fitting.fit_rates(run.h[..., 0], run.y, run.w, run.dx2, run.dy2)
        print(fit.eta_h, fit.eta_y, fit.r2, fit.status)        # [4], [4], [4, 3], [4]
        ```
    """
    data, ts, dx2_b, dy2_b, batch = _prepare(h, y, w, dx2, dy2, ts)
    check_int_range("grid_points", grid_points, 1)
    check_int_range("num_fit_times", num_fit_times, 2)
    check_int_range("max_iterations", max_iterations, 1)
    check_int_range("polish_iterations", polish_iterations, 1)
    check_int_range("max_steps", max_steps, 1)
    check_int_range("grid_max_steps", grid_max_steps, 1)
    check_int_range("chunk_size", chunk_size, 1)
    check_real("grid_decades", grid_decades, lo=0.0, lo_open=True)
    check_solver("solver", solver)
    check_tolerance("rtol", rtol)
    check_tolerance("atol", atol)
    n = data.shape[0]
    if init is None:
        init_b = jnp.zeros((n, 2), data.dtype)
    else:
        init = as_array("init", init).astype(data.dtype)
        if init.ndim < 1 or init.shape[-1] != 2:
            raise ValueError(f"init must have shape [..., 2] holding (eta_h, eta_y); got {init.shape}.")
        try:
            init_b = jnp.broadcast_to(init, batch + (2,)).reshape(n, 2)
        except ValueError:
            raise ValueError(f"init {init.shape} does not broadcast against the trajectories' "
                             f"leading shape {batch}.") from None
    check_vector_field("vector_field", vector_field, data.dtype)
    if n == 0:
        nan = jnp.full(batch, jnp.nan, data.dtype)
        return RateFit(eta_h=nan, eta_y=nan, loss=nan, r2=jnp.full(batch + (3,), jnp.nan, data.dtype),
                       status=jnp.zeros(batch, jnp.int32), iterations=jnp.zeros(batch, jnp.int32))
    cfg = _config(data.dtype, solver, rtol, atol, max_steps, vector_field)
    # Power-of-two buckets of the batch size: one compiled program per bucket.
    data, dx2_b, dy2_b, init_b = pad_rows((data, dx2_b, dy2_b, init_b), bucket(n))
    fit = _fit_batch(data, ts, dx2_b, dy2_b, init_b, n_fit=num_fit_times, grid_points=grid_points,
                     grid_decades=float(grid_decades), cfg=cfg,
                     grid_cfg=_config(data.dtype, solver, rtol, atol, min(grid_max_steps, max_steps),
                                      vector_field),
                     max_iterations=max_iterations,
                     polish_iterations=polish_iterations, chunk_size=chunk_width(chunk_size, n))
    return jax.tree_util.tree_map(lambda a: a[:n].reshape(batch + a.shape[1:]), fit)


def fit_layers(h, y, w, dx2, dy2, *, ts=None, **kwargs) -> RateFit:
    """Fit every recorded layer at once: ``h`` [..., T, layers] (``Run.h`` layout),
    ``y`` and ``w`` [..., T] shared by the layers. Returns a :class:`RateFit` [..., layers].

    Same objective, options, statuses and promises as :func:`fit_rates`; the layers
    are fitted together as one batch.
    """
    h, y, w = as_array("h", h), as_array("y", y), as_array("w", w)
    dx2, dy2 = as_array("dx2", dx2), as_array("dy2", dy2)
    if h.ndim < 2:
        raise ValueError(f"h must have shape [..., T, layers]; got shape {h.shape}.")
    for name, a in (("y", y), ("w", w)):
        if a.ndim < 1:
            raise ValueError(f"{name} must have shape [..., T] with time last; got a scalar.")
    return fit_rates(jnp.moveaxis(h, -1, -2), y[..., None, :], w[..., None, :],
                     dx2[..., None], dy2[..., None], ts=ts, **kwargs)


def fit_objective(log_rates, h, y, w, dx2, dy2, *, ts=None, solver=None, rtol=None, atol=None,
                  max_steps: int = 4096, vector_field=vector_field):
    """L(log η_h, log η_y) = Σ_t ||z(t) − ẑ(t)||² for ONE trajectory (h, y, w of shape [T]).

    ``log_rates`` = (log η_h, log η_y). Differentiate it in forward mode
    (``jax.jacfwd``/``jax.jvp``: two inputs, one output). A failed solve gives +inf
    with a zero (finite) derivative. ``vector_field``: as in :func:`fit_rates`.
    Invalid data raise ``ValueError`` (one trajectory: there is no status to carry).
    """
    data, ts, dx2_b, dy2_b, batch = _prepare(h, y, w, dx2, dy2, ts, strict=True)
    if batch != ():
        raise ValueError(f"fit_objective takes one trajectory (h, y, w of shape [T]); got batch {batch}.")
    log_rates = as_array("log_rates", log_rates)
    if log_rates.shape != (2,):
        raise ValueError(f"log_rates must have shape (2,) holding (log eta_h, log eta_y); "
                         f"got {log_rates.shape}.")
    check_solver("solver", solver)
    check_tolerance("rtol", rtol)
    check_tolerance("atol", atol)
    check_int_range("max_steps", max_steps, 1)
    check_vector_field("vector_field", vector_field, data.dtype)
    cfg = _config(data.dtype, solver, rtol, atol, max_steps, vector_field)
    return _objective(log_rates.astype(data.dtype), data[0], ts, dx2_b[0], dy2_b[0], cfg)


@eqx.filter_jit
def _objective(log_rates, data, ts, dx2, dy2, cfg):
    fun = _residual_fn(data, ts, jnp.ones(ts.shape, data.dtype), dx2, dy2, cfg)
    r, ok = fun(log_rates)
    r = jnp.where(ok, r, 0.0)
    return jnp.where(ok, jnp.sum(r * r), jnp.inf)


def _config(dtype, solver, rtol, atol, max_steps, field=vector_field):
    # Tolerances 10x tighter than solve's in float64: Levenberg–Marquardt stops on a
    # relative gain of 1e-10, which a noisier objective would not resolve.
    rtol, atol = default_tolerances(dtype, rtol, atol, tighten=10.0)
    return _Config(
        solver=diffrax.Tsit5() if solver is None else solver,
        rtol=float(rtol),
        atol=float(atol),
        max_steps=int(max_steps),
        h_floor=H_FLOOR,
        field=field,
    )
